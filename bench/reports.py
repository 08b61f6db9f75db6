"""Status reports: reports/s from POST to recorded row, next to the raw Azurite upsert ceiling.

    .venv/bin/python -m bench.reports [--reports 600] [--devices 120] [--concurrency 16]

1. Ceiling: the same entities the recorder writes for each report (its `DeviceStatusHistory`
   row and the device's `DeviceStatus` row) upserted straight into Azurite with the product's
   storage clients, `--concurrency` in flight: the storage work no pipeline can avoid.
2. Pipeline: `POST /api/reports` to the development host (token validation, schema, enqueue),
   its `record_status` queue trigger (history insert, ETag-conditional status write), until
   every report is a row and counted; `--concurrency` POSTs in flight.
Both run on one fresh Azurite in the same run, with a loopback Entra issuer. Prints one line per
figure and the ratio (goal: at least 0.7).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from devhost.azurite import running_azurite
from devtools.fakes.entra import EntraIssuer
from shared.names import DEVICE_STATUS, DEVICE_STATUS_HISTORY
from shared.reports import history_entity, latest_properties, parse_report
from shared.storage import Storage
from tests.support.devhost import DevHostProcess
from tests.support.settings import TENANT_ID, product_env
from tests.support.storage import storage_on

PIPELINE_ROUND_TRIPS = 7


def make_reports(count: int, devices: int) -> list[dict[str, Any]]:
    ids = [str(uuid.uuid4()) for _ in range(devices)]
    start = datetime.now(UTC) - timedelta(hours=2)
    return [
        {
            "reportId": str(uuid.uuid4()),
            "deviceId": ids[i % devices],
            "tenantId": TENANT_ID,
            "hostname": f"PC{i % devices:04d}.contoso.com",
            "stage": "installed",
            "azureAdJoined": True,
            "domainJoined": False,
            "ccmsetupExitCode": 0,
            "clientVersion": "5.00.9128.1000",
            "siteCode": "ABC",
            "reportedAt": (start + timedelta(seconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "dsregcmd": {"AzureAdJoined": "YES", "DomainJoined": "NO", "TenantName": "Contoso"},
        }
        for i in range(count)
    ]


async def ceiling(storage: Storage, bodies: list[dict[str, Any]], concurrency: int) -> float:
    """Reports/s when each report is just its two upserts (history row, status row)."""
    history = await storage.table(DEVICE_STATUS_HISTORY + "Ceiling")
    status = await storage.table(DEVICE_STATUS + "Ceiling")
    limit = asyncio.Semaphore(concurrency)

    async def write(body: dict[str, Any]) -> None:
        report = parse_report(body)
        async with limit:
            await history.upsert_entity(history_entity(report, message_id=None))
            latest = {k: v for k, v in latest_properties(report).items() if v is not None}
            await status.upsert_entity(
                {"PartitionKey": report.tenant_id, "RowKey": report.device_id, **latest}
            )

    started = time.perf_counter()
    await asyncio.gather(*(write(body) for body in bodies))
    return len(bodies) / (time.perf_counter() - started)


async def pipeline(
    storage: Storage,
    host: DevHostProcess,
    issuer: EntraIssuer,
    bodies: list[dict[str, Any]],
    concurrency: int,
) -> float:
    """Reports/s from the first POST until every report is recorded and counted."""
    token = issuer.mint_access_token()
    limit = asyncio.Semaphore(concurrency)
    status_table = await storage.table(DEVICE_STATUS)

    async with httpx.AsyncClient(timeout=60) as client:

        async def post(body: dict[str, Any]) -> None:
            async with limit:
                answer = await client.post(
                    host.url("/api/reports"),
                    content=json.dumps(body),
                    headers={"Authorization": f"Bearer {token}"},
                )
                if answer.status_code != 202:
                    raise RuntimeError(f"POST answered {answer.status_code}: {answer.text}")

        started = time.perf_counter()
        await asyncio.gather(*(post(body) for body in bodies))
        posted = time.perf_counter() - started
        print(f"  {len(bodies)} POSTs answered 202 in {posted:.2f} s")
        deadline = started + 300
        while time.perf_counter() < deadline:
            counted = 0
            async for row in status_table.list_entities(select=["reportCount"]):
                counted += int(row["reportCount"])
            if counted >= len(bodies):
                return len(bodies) / (time.perf_counter() - started)
            await asyncio.sleep(0.2)  # polling the table for the last rows; bounded
    raise TimeoutError("reports were not all recorded within 300 s")


async def main_async(args: argparse.Namespace) -> None:
    bodies = make_reports(args.reports, args.devices)
    with EntraIssuer() as issuer, running_azurite() as azurite:
        async with storage_on(azurite) as storage:
            env = product_env(
                azurite.connection_string,
                AAD_AUTHORITY_HOST=issuer.authority_host,
                BOOTSTRAP_AUTH="user",
            )
            roof = await ceiling(
                storage, make_reports(args.reports, args.devices), args.concurrency
            )
            with DevHostProcess(env) as host:
                # Warm up: key fetch, table creation, first queue poll.
                await pipeline(storage, host, issuer, make_reports(8, 8), 4)
                await _reset_counts(storage)
                measured = await pipeline(storage, host, issuer, bodies, args.concurrency)
    print(f"ceiling  (2 Azurite upserts per report, {args.concurrency} in flight): {roof:7.1f}/s")
    print(f"pipeline (POST -> queue -> record_status -> rows):      {measured:7.1f}/s")
    print(f"ratio pipeline/ceiling: {measured / roof:.2f} (goal >= 0.7)")
    # By design, not measured: each report costs the pipeline 7 storage round trips (enqueue,
    # dequeue, history insert, status read, status ETag write, counted mark, delete) against
    # the ceiling's 2, so a ratio near 2/7 means Azurite, not the app, is the limit.
    print(
        f"storage round trips/s: pipeline ~{measured * PIPELINE_ROUND_TRIPS:.0f} "
        f"({PIPELINE_ROUND_TRIPS} per report), ceiling {roof * 2:.0f} (2 per report)"
    )


async def _reset_counts(storage: Storage) -> None:
    table = await storage.table(DEVICE_STATUS)
    async for row in table.list_entities(select=["PartitionKey", "RowKey"]):
        await table.delete_entity(row["PartitionKey"], row["RowKey"])


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.reports", description=__doc__)
    parser.add_argument("--reports", type=int, default=600)
    parser.add_argument("--devices", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=16)
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
