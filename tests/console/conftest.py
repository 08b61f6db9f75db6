"""One development host with a small fleet for the console's tests (OpenAPI and browser).

The fleet is recorded the way devices record it (reports through the `device-status` queue and
the `record_status` trigger); a bundle issuance and a running discovery run are written as the
product writes them, so the device timeline and the live progress have something to show.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from client.dsregcmd import parse_dsregcmd
from devhost.azurite import StorageAccount
from devtools.fakes.entra import EntraIssuer
from shared.ids import inverted_ticks
from shared.names import (
    AAD_GROUP_MEMBERS,
    AAD_GROUPS,
    BUNDLE_ISSUANCE,
    DEVICE_STATUS,
    DISCOVERY_RUNS,
)
from tests.reports.helpers import (
    Service,
    enqueue,
    fresh_overview,
    http,
    report,
    rows,
    service_on,
    wait_for,
)
from tests.support.issuer import entra_issuer
from tests.support.settings import SERVER_APP_ID, TENANT_ID

__all__ = ["entra_issuer"]

DATA = Path(__file__).parents[2] / "devtools" / "samples"
# A user in the group of the fleet's one install profile.
PROFILED_USER = "6a1d3c5e-2b4f-4a8c-9e0d-1f2a3b4c5d6e"


def dsregcmd(name: str) -> dict[str, str]:
    return parse_dsregcmd((DATA / f"dsregcmd_{name}.txt").read_text()).values


@dataclass
class Fleet:
    service: Service
    failed_device: str  # prerequisite failure (ccmsetup 9)
    not_joined_device: str
    installed_device: str
    run_id: str
    devices: int


def _fleet_reports(now: datetime) -> tuple[list[dict[str, Any]], dict[str, str]]:
    joined = dsregcmd("entra_joined")
    bodies: list[dict[str, Any]] = []
    for day in range(12):  # installs spread over the chart's days
        for _ in range(day % 3 + 1):
            bodies.append(
                report(
                    stage="installed",
                    reported_at=now - timedelta(days=day, hours=1),
                    dsregcmd=joined,
                    hostname=f"PC{len(bodies):04d}",
                )
            )
    named = {
        "failed": report(stage="failed", ccmsetupExitCode=9, dsregcmd=joined, hostname="PC-PREREQ"),
        "not_joined": report(
            stage="failed",
            ccmsetupExitCode=6,
            dsregcmd=dsregcmd("not_joined"),
            hostname="LAPTOP-H4R8N2VC",
        ),
        "stuck": report(
            stage="installing",
            ccmsetupExitCode=None,
            dsregcmd=joined,
            reported_at=now - timedelta(hours=5),
            hostname="PC-STUCK",
        ),
        "pending": report(
            stage="bundle-received",
            ccmsetupExitCode=None,
            dsregcmd=dsregcmd("hybrid_pending"),
            hostname="PC0733",
        ),
    }
    bodies += named.values()
    ids = {name: body["deviceId"] for name, body in named.items()}
    ids["installed"] = bodies[0]["deviceId"]
    return bodies, ids


@pytest.fixture(scope="package")
async def fleet(
    entra_issuer: EntraIssuer, new_account: Callable[[], StorageAccount]
) -> AsyncIterator[Fleet]:
    entra_issuer.serve_demo_admin_tokens(audience=SERVER_APP_ID)
    async with service_on(new_account(), entra_issuer, BOOTSTRAP_AUTH="user") as service:
        now = datetime.now(UTC)
        bodies, ids = _fleet_reports(now)
        await enqueue(service.storage, [json.dumps(body) for body in bodies])

        async def recorded() -> bool:
            return len(await rows(service.storage, DEVICE_STATUS)) == len(bodies)

        await wait_for(recorded, within=60, what="the fleet recorded")
        issuance = await service.storage.table(BUNDLE_ISSUANCE)
        await issuance.create_entity(
            {
                "PartitionKey": TENANT_ID,
                "RowKey": str(uuid.uuid4()),
                "sub": ids["failed"],
                "oid": str(uuid.uuid4()),
                "issued": now - timedelta(minutes=30),
                "expires": now,
            }
        )
        groups = await service.storage.table(AAD_GROUPS)
        group_ids = {"CM Internet Clients": str(uuid.uuid4()), "CM Pilot Ring": str(uuid.uuid4())}
        for name, group_id in group_ids.items():
            await groups.create_entity(
                {
                    "PartitionKey": TENANT_ID,
                    "RowKey": group_id,
                    "displayName": name,
                    "securityEnabled": True,
                    "isDeleted": name == "CM Pilot Ring",
                    "lastDiscoveredAt": now - timedelta(minutes=5),
                }
            )
        members = await service.storage.table(AAD_GROUP_MEMBERS)
        await members.create_entity(
            {
                "PartitionKey": group_ids["CM Internet Clients"],
                "RowKey": PROFILED_USER,
                "memberType": "user",
                "isDeleted": False,
                "tenantId": TENANT_ID,
            }
        )
        put = http(
            "PUT",
            service.url("/api/profiles/internet-clients"),
            token=service.admin_token(),
            body=json.dumps(
                {
                    "groupId": group_ids["CM Internet Clients"],
                    "priority": 10,
                    "siteCode": "INT",
                    "properties": {"SMSCACHESIZE": "10240"},
                }
            ).encode(),
        )
        assert put.status in (200, 201), put.body
        run_id = f"{inverted_ticks(now)}-c0ffee"
        runs = await service.storage.table(DISCOVERY_RUNS)
        progress = {
            "pages": 3,
            "users": 2997,
            "expectedUsers": 6000,
            "percent": 49,
            "secondsLeft": 40,
            "usersPerSecond": 75.0,
        }
        await runs.create_entity(
            {
                "PartitionKey": TENANT_ID,
                "RowKey": run_id,
                "mode": "full",
                "trigger": "timer",
                "status": "running",
                "pages": 3,
                "upserts": 2997,
                "deletes": 0,
                "invocations": 1,
                "startedAt": now - timedelta(seconds=40),
                "durationSeconds": 40.0,
                "progress": json.dumps(progress),
            }
        )
        # The overview is a snapshot: its first request asks for the pass that makes one.
        await fresh_overview(service)
        yield Fleet(
            service,
            failed_device=ids["failed"],
            not_joined_device=ids["not_joined"],
            installed_device=ids["installed"],
            run_id=run_id,
            devices=len(bodies),
        )
