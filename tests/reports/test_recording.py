"""`record_status` through the development host: exactly once in effect, nothing lost.

Each test has its own Azurite (its own queue), so counts are exact for the whole table.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from devhost.azurite import StorageAccount, free_port
from devtools.fakes.entra import EntraIssuer
from shared.names import DEVICE_STATUS, DEVICE_STATUS_HISTORY, DEVICE_STATUS_QUEUE, REJECTED_REPORTS
from shared.reports.replay import POISON_QUEUE
from shared.storage import Storage
from tests.reports.helpers import enqueue, report, rows, service_on, wait_for
from tests.support.devhost import REPO_ROOT, DevHostProcess

SEED = 20261127


def reports_with_duplicates(
    devices: int, per_device: int, duplicates: int
) -> tuple[list[str], dict[str, list[dict[str, Any]]]]:
    """Messages in random order (late reports everywhere) and, per device, its distinct reports."""
    rng = random.Random(SEED)
    start = datetime.now(UTC) - timedelta(days=1)
    by_device: dict[str, list[dict[str, Any]]] = {}
    for _ in range(devices):
        device = str(uuid.uuid4())
        by_device[device] = [
            report(
                device_id=device,
                reported_at=start + timedelta(minutes=rng.randrange(0, 1440), microseconds=i),
                stage=rng.choice(["bundle-received", "installing", "installed", "failed"]),
            )
            for i in range(per_device)
        ]
    distinct = [body for bodies in by_device.values() for body in bodies]
    messages = [json.dumps(body) for body in distinct]
    # A duplicate is the same report again, sometimes with its keys in another order.
    for body in rng.choices(distinct, k=duplicates):
        messages.append(json.dumps(body, sort_keys=rng.random() < 0.5))
    rng.shuffle(messages)
    return messages, by_device


async def recorded_history(storage: Storage, expected: int) -> list[Any] | None:
    found = await rows(storage, DEVICE_STATUS_HISTORY)
    return found if len(found) >= expected else None


async def counts_settled(storage: Storage, expected_total: int) -> list[Any] | None:
    found = await rows(storage, DEVICE_STATUS)
    total = sum(row["reportCount"] for row in found)
    return found if total >= expected_total else None


async def assert_exact_rows(
    storage: Storage, by_device: dict[str, list[dict[str, Any]]], *, within: float
) -> None:
    distinct = sum(len(bodies) for bodies in by_device.values())
    history = await wait_for(
        lambda: recorded_history(storage, distinct), within=within, what=f"{distinct} rows"
    )
    status = await wait_for(
        lambda: counts_settled(storage, distinct), within=within, what="every report counted"
    )
    # Exactly one history row per report, however often it was delivered.
    assert len(history) == distinct
    per_device: dict[str, set[str]] = defaultdict(set)
    for row in history:
        per_device[row["PartitionKey"]].add(row["reportId"])
    assert per_device == {d: {b["reportId"] for b in bodies} for d, bodies in by_device.items()}
    # DeviceStatus: the newest report wins whatever the arrival order; each report counted once.
    assert len(status) == len(by_device)
    for row in status:
        bodies = by_device[row["RowKey"]]
        newest = max(bodies, key=lambda b: (b["reportedAt"], b["reportId"]))
        assert row["reportId"] == newest["reportId"]
        assert row["stage"] == newest["stage"]
        assert row["reportCount"] == len(bodies), row["RowKey"]
        assert row["lastReportAt"] == datetime.fromisoformat(newest["reportedAt"])


async def test_reports_with_duplicates_give_exact_rows_on_two_hosts(
    entra_issuer: EntraIssuer, new_account: Callable[[], StorageAccount]
) -> None:
    """Two host instances on one queue (scale-out): ETag writes, no lost or doubled counts.

    Eight reports per device and one message in five a duplicate: 30 devices (300 messages)
    contend per device as 100 did; both hosts poll before the first message is sent, so both
    take part whatever the size."""
    messages, by_device = reports_with_duplicates(devices=30, per_device=8, duplicates=60)
    assert len(messages) == 300
    async with service_on(new_account(), entra_issuer, start=False) as service:
        first = service.start_host()
        with DevHostProcess(service.env) as second:
            await enqueue(service.storage, messages)
            await assert_exact_rows(service.storage, by_device, within=90)
            # Both instances recorded reports (the log line is the host's, per invocation).
            assert "Executed 'record_status'" in first.output()
            assert "Executed 'record_status'" in second.output()


async def test_garbage_on_the_queue_is_kept_in_rejected_reports(
    entra_issuer: EntraIssuer, new_account: Callable[[], StorageAccount]
) -> None:
    async with service_on(new_account(), entra_issuer) as service:
        huge = "x" * 40_000
        texts = ["not json at all", json.dumps({"reportId": "r1"}), huge]
        await enqueue(service.storage, texts)
        # Bytes that are not even UTF-8, base64 encoded as the host expects.
        raw_queue = service.storage.queues.get_queue_client(DEVICE_STATUS_QUEUE)
        await raw_queue.send_message(base64.b64encode(b"\xff\xfe\x00binary").decode())
        found = await wait_for(
            lambda: _at_least(rows(service.storage, REJECTED_REPORTS), 4),
            within=30,
            what="four rejected rows",
        )
        by_raw = {row["raw"][:20]: row for row in found}
        assert "not valid JSON" in by_raw["not json at all"]["reason"]
        partial = by_raw['{"reportId": "r1"}']
        assert "reportId:" in partial["reason"]
        assert "deviceId: is required" in partial["reason"]
        long_row = by_raw["x" * 20]
        assert (long_row["rawSize"], long_row["rawTruncated"]) == (40_000, True)
        assert len(long_row["raw"]) < 40_000
        assert any(row["raw"].startswith("\\xff\\xfe") for row in found)
        for row in found:
            assert row["PartitionKey"] == datetime.now(UTC).strftime("%Y%m%d")
            assert row["queue"] == DEVICE_STATUS_QUEUE
            assert row["dequeueCount"] == 1
        # Not retried: the queue empties and nothing goes to the poison queue.
        queue = await service.storage.queue(DEVICE_STATUS_QUEUE)
        await wait_for(lambda: _queue_empty(queue), within=15, what="device-status to be empty")
        assert not await _messages(service.storage, POISON_QUEUE)
        assert not await rows(service.storage, DEVICE_STATUS_HISTORY)


async def test_sigkill_mid_batch_loses_nothing_and_doubles_nothing(
    entra_issuer: EntraIssuer, new_account: Callable[[], StorageAccount]
) -> None:
    messages, by_device = reports_with_duplicates(devices=30, per_device=5, duplicates=30)
    async with service_on(new_account(), entra_issuer, start=False) as service:
        await enqueue(service.storage, messages)
        host = service.start_host()
        await wait_for(
            lambda: recorded_history(service.storage, 40),
            within=30,
            what="some rows",
            interval=0.05,
        )
        host.kill()
        before = await rows(service.storage, DEVICE_STATUS_HISTORY)
        assert len(before) < 150, "the host finished before it was killed: nothing was tested"
        # Messages in flight at the kill reappear when their lease (10 s) runs out.
        service.start_host()
        await assert_exact_rows(service.storage, by_device, within=100)


async def test_storage_errors_end_in_poison_and_replay_records_them_once(
    entra_issuer: EntraIssuer,
    new_account: Callable[[], StorageAccount],
    script_root_with_fast_retries: Path,
) -> None:
    sent = [report(), report()]
    async with service_on(new_account(), entra_issuer, start=False) as service:
        good_env = dict(service.env)
        # Tables unreachable, queues fine: every attempt fails with a transient storage error.
        dead_tables = f"TableEndpoint=http://127.0.0.1:{free_port()}/{service.account.name};"
        service.env["AzureWebJobsStorage"] = (
            service.account.connection_string.split("TableEndpoint=")[0] + dead_tables
        )
        await enqueue(service.storage, [json.dumps(body) for body in sent])
        wire = sorted(base64.b64encode(json.dumps(b).encode()).decode() for b in sent)
        service.start_host(script_root=script_root_with_fast_retries)
        poisoned = await wait_for(
            lambda: _at_least(_messages(service.storage, POISON_QUEUE), 2),
            within=90,
            what="two poison messages",
        )
        assert sorted(m.content for m in poisoned) == wire  # intact, byte for byte
        assert service.host is not None
        service.host.stop()

        dry = await _replay(good_env, "--dry-run")
        assert "2 message(s) in device-status-poison" in dry
        assert len(await _messages(service.storage, POISON_QUEUE)) == 2
        assert "moved 1 message(s)" in await _replay(good_env, "--max", "1")
        assert "moved 1 message(s)" in await _replay(good_env)
        assert not await _messages(service.storage, POISON_QUEUE)
        # Replay the same message again (as a crash between send and delete would): still once.
        await enqueue(service.storage, [json.dumps(sent[0])])

        service.env = good_env
        service.start_host()
        by_device = {body["deviceId"]: [body] for body in sent}
        await assert_exact_rows(service.storage, by_device, within=30)
        queue = await service.storage.queue(DEVICE_STATUS_QUEUE)
        await wait_for(lambda: _queue_empty(queue), within=15, what="device-status empty")
        assert len(await rows(service.storage, DEVICE_STATUS_HISTORY)) == 2


async def _replay(env: dict[str, str], *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "shared.reports.replay",
        *args,
        cwd=REPO_ROOT,
        env={"PATH": os.environ.get("PATH", ""), **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    output, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 0, output
    return output.decode()


async def _at_least(found: Any, count: int) -> Any:
    items = await found
    return items if len(items) >= count else None


async def _messages(storage: Storage, queue_name: str) -> list[Any]:
    client = storage.queues.get_queue_client(queue_name)
    try:
        return list(await client.peek_messages(max_messages=32))
    except ResourceNotFoundError:  # the poison queue exists once a message is poisoned
        return []


async def _queue_empty(queue: Any) -> bool:
    properties = await queue.get_queue_properties()
    return bool(properties.approximate_message_count == 0)
