"""`make run` demo data: a fleet of devices reporting, and a full discovery run, then one line.

Once the development host answers, a background thread starts `discovery_full` on the demo
directory and puts the demo fleet's status reports on `device-status` (as `POST /api/reports`
would, after its checks), waits until the host has recorded them and the run has finished
(bounded), and prints `Demo data ready: ...` with the console's address. A fleet already
recorded for the tenant is left as it is (a second `make run` adds nothing).

The fleet covers every stage and the common failures the console explains: not joined, hybrid
join pending, a disabled device, ccmsetup exit codes, stuck installs and 0x87D00231 for a user
discovery has not seen.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

from client.dsregcmd import parse_dsregcmd
from devtools.demo_profiles import seed_demo_profiles
from shared.jobs import Job, send_job
from shared.names import DEVICE_STATUS, DEVICE_STATUS_QUEUE, DISCOVERY_RUNS
from shared.reports import fleet_overview
from shared.storage import Storage, StorageConfig

DEMO_DEVICES: Final = 240
READY_WITHIN_SECONDS: Final = 180.0
# Recorded `dsregcmd /status` outputs (the tests read them too), retargeted to the demo tenant.
_SAMPLES: Final = Path(__file__).parent / "samples"
# (share of the fleet, stage, ccmsetup exit code, dsregcmd sample, install error)
_MIX: Final = (
    (0.70, "installed", 0, "entra_joined", None),
    (0.04, "failed", 9, "entra_joined", None),
    (0.03, "failed", 6, "not_joined", None),
    (0.03, "bundle-received", None, "hybrid_pending", None),
    (0.03, "failed", 6, "device_disabled", None),
    (0.03, "failed", 10, "entra_joined", None),
    (0.04, "failed", 6, "entra_joined", 0x87D00231),
    (0.04, "installing", 7, "hybrid_joined", None),
    (0.03, "installing", None, "entra_joined", None),  # stuck: reported hours ago
    (0.03, "installing", None, "entra_joined", None),  # in progress
)


# The tenant the recorded samples were joined to; the demo's devices are joined to the demo's.
_SAMPLE_TENANT: Final = re.compile("72f988bf-86f1-41af-91ab-2d7cd011db47", re.IGNORECASE)


def _sample(name: str, tenant_id: str) -> dict[str, str]:
    text = (_SAMPLES / f"dsregcmd_{name}.txt").read_text()
    return parse_dsregcmd(_SAMPLE_TENANT.sub(tenant_id, text)).values


def demo_reports(tenant_id: str, now: datetime, *, seed: str = "demo") -> list[dict[str, Any]]:
    """The demo fleet's latest reports: deterministic ids, times relative to `now`."""
    rng = random.Random(seed)
    samples: dict[str, dict[str, str]] = {}
    reports: list[dict[str, Any]] = []
    namespace = uuid.uuid5(uuid.NAMESPACE_URL, f"cmboot-demo:{seed}")
    for kind, (share, stage, exit_code, sample, install_error) in enumerate(_MIX):
        for _ in range(round(share * DEMO_DEVICES)):
            index = len(reports)
            age = timedelta(minutes=rng.randint(2, 50))
            if stage == "installed":
                age = timedelta(days=rng.randint(0, 27), minutes=rng.randint(0, 1440))
            elif kind == len(_MIX) - 2:
                age = timedelta(hours=rng.randint(3, 30))
            body: dict[str, Any] = {
                "reportId": str(uuid.uuid5(namespace, f"report-{index}")),
                "deviceId": str(uuid.uuid5(namespace, f"device-{index}")),
                "tenantId": tenant_id,
                "hostname": f"DEMO-PC{index:04d}",
                "stage": stage,
                "azureAdJoined": sample != "not_joined" and sample != "hybrid_pending",
                "domainJoined": sample.startswith("hybrid"),
                "ccmsetupExitCode": exit_code,
                "clientVersion": "5.00.9128.1000" if stage == "installed" else None,
                "siteCode": "ABC",
                "reportedAt": (now - age).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "dsregcmd": samples.setdefault(sample, _sample(sample, tenant_id)),
            }
            if install_error is not None:
                body["installErrorCode"] = install_error
                body["userObjectId"] = str(uuid.uuid5(namespace, f"undiscovered-user-{index}"))
            reports.append(body)
    return reports


class DemoSeeder(threading.Thread):
    """Fills the demo tables through the running host, then says so once."""

    def __init__(
        self, values: Mapping[str, str], host_url: str, *, say: Callable[[str], None] = print
    ) -> None:
        super().__init__(name="demo-seeder", daemon=True)
        self._values = dict(values)
        self._host_url = host_url
        self._say = say

    def run(self) -> None:
        try:
            self._say(asyncio.run(self._seed()))
        except Exception as error:  # a demo helper: report, never take the host down
            self._say(f"Demo data NOT ready: {type(error).__name__}: {error}")

    async def _seed(self) -> str:
        deadline = time.monotonic() + READY_WITHIN_SECONDS
        self._wait_for_host(deadline)
        tenant = self._values["AAD_TENANT_ID"].lower()
        storage = Storage(StorageConfig.from_env(self._values))
        try:
            status = await storage.table(DEVICE_STATUS)
            fleet = demo_reports(tenant, datetime.now(UTC))
            if await _count(status, tenant) == 0:
                # Profiles before the run: its group pass resolves them for the demo device.
                await seed_demo_profiles(storage, tenant)
                self._post("/admin/functions/discovery_full", {"input": ""})
                queue = await storage.queue(DEVICE_STATUS_QUEUE)
                for body in fleet:
                    await queue.send_message(json.dumps(body))
            devices = await _until(lambda: _count(status, tenant), deadline, len(fleet))
            runs = await storage.table(DISCOVERY_RUNS)
            users = await _until(lambda: _discovered(runs, tenant), deadline, 1)
            # The console's overview is a snapshot a pass publishes: have it counted already.
            await _until(lambda: _overview_counted(storage, tenant), deadline, 1)
        finally:
            await storage.close()
        return (
            f"Demo data ready: {devices} devices recorded, {users} users discovered. "
            f"Console: {self._host_url}/api/console (Sign in = the demo admin)"
        )

    def _wait_for_host(self, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self._host_url + "/admin/host/status", timeout=2) as r:
                    if json.load(r).get("state") == "Running":
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.2)  # polling the host's readiness endpoint, bounded by `deadline`
        raise TimeoutError("the development host did not start")

    def _post(self, path: str, body: object) -> None:
        request = urllib.request.Request(
            self._host_url + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10):
            pass


async def _count(table: Any, tenant: str) -> int:
    rows = table.query_entities("PartitionKey eq @t", parameters={"t": tenant}, select=["RowKey"])
    return sum([1 async for _ in rows])


async def _discovered(table: Any, tenant: str) -> int:
    """Users the newest succeeded run wrote (0 while none has finished)."""
    rows = table.query_entities(
        "PartitionKey eq @t and status eq 'succeeded' and resource eq 'users'",
        parameters={"t": tenant},
    )
    async for row in rows:
        return int(row.get("upserts", 0))
    return 0


async def _overview_counted(storage: Storage, tenant: str) -> bool:
    """The overview as the console reads it; the first call asks the host for a pass."""
    overview = await fleet_overview(
        tenant, request_pass=lambda: send_job(Job(tenant, "overview"), storage), storage=storage
    )
    return bool(overview["asOf"]) and not overview["refreshing"]


async def _until(probe: Callable[[], Any], deadline: float, at_least: int) -> int:
    value = 0
    while time.monotonic() < deadline:
        value = int(await probe())
        if value >= at_least:
            return value
        await asyncio.sleep(0.5)  # polling the tables the host writes, bounded by `deadline`
    raise TimeoutError(f"only {value} of {at_least} were there in time")
