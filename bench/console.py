"""Admin console: the fleet overview (a snapshot) and its summarization pass, each next to the
ceiling measured in the same run.

    .venv/bin/python -m bench.console [--devices 2400] [--rounds 3]

1. The pass: `run_overview_pass` in this process over the tenant's `DeviceStatus` partition
   (pages of 1,000, the explainer on every row, a checkpoint per page), in devices/s, next to
   the ceiling: one bare query of the same partition with the same columns.
2. `GET /api/devices?summary=overview` through the development host, once the host has
   published a snapshot (the first request asks for the pass, `discovery_continue` runs it):
   one point read, next to a bare point read of the snapshot row straight into Azurite. And the
   first page of the device list (50 devices).
3. With Chromium installed: sign-in click to the rendered overview in the console.
The fleet is the `make run` demo fleet, repeated; rows are written straight into `DeviceStatus`.
Prints one line per figure (median of `--rounds`). Azure Table storage serves a query at up to
1,000 entities per page, so a pass takes about one page request per 1,000 devices; the request no
longer depends on the fleet's size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from devhost.azurite import running_azurite
from devtools.demo_fleet import demo_reports
from devtools.fakes.entra import EntraIssuer
from shared.names import DEVICE_OVERVIEW, DEVICE_STATUS
from shared.reports import (
    OVERVIEW_COLUMNS,
    latest_properties,
    parse_report,
    run_overview_pass,
)
from shared.storage import Storage
from tests.support.devhost import DevHostProcess
from tests.support.settings import SERVER_APP_ID, TENANT_ID, product_env
from tests.support.storage import storage_on

BATCH = 100  # Azurite breaks on larger table transactions


async def write_fleet(storage: Storage, devices: int) -> None:
    table = await storage.table(DEVICE_STATUS)
    now = datetime.now(UTC)
    rows: list[dict[str, Any]] = []
    seed = 0
    while len(rows) < devices:
        for body in demo_reports(TENANT_ID, now, seed=f"bench-{seed}"):
            report = parse_report(body, now=now)
            rows.append(
                {
                    "PartitionKey": TENANT_ID,
                    "RowKey": report.device_id,
                    **{k: v for k, v in latest_properties(report).items() if v is not None},
                    "lastReportAt": report.reported_at,
                    "reportCount": 1,
                }
            )
        seed += 1
    rows = rows[:devices]
    batches = [rows[i : i + BATCH] for i in range(0, len(rows), BATCH)]
    limit = asyncio.Semaphore(4)

    async def send(batch: list[dict[str, Any]]) -> None:
        async with limit:
            await table.submit_transaction([("upsert", row) for row in batch])

    await asyncio.gather(*(send(batch) for batch in batches))


async def scan(storage: Storage) -> int:
    table = await storage.table(DEVICE_STATUS)
    rows = table.query_entities(
        "PartitionKey eq @t", parameters={"t": TENANT_ID}, select=OVERVIEW_COLUMNS
    )
    return sum([1 async for _ in rows])


async def run_pass(storage: Storage) -> None:
    async def nothing() -> None:
        """The budget is never spent here, so no continuation is queued."""

    result = await run_overview_pass(
        TENANT_ID, request_pass=nothing, stuck_after=timedelta(minutes=120), storage=storage
    )
    assert result.status == "published", result


async def point_read(storage: Storage) -> None:
    table = await storage.table(DEVICE_OVERVIEW)
    await table.get_entity(TENANT_ID, "overview")


async def fresh_overview(url: str, token: str) -> None:
    """Ask until the host has published a snapshot and runs no pass (bounded: 5 minutes)."""
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        body = json.loads(await asyncio.to_thread(get, url, token))
        if body["asOf"] and not body["refreshing"]:
            return
        await asyncio.sleep(0.5)  # polling the host with a deadline
    raise TimeoutError("no fresh overview snapshot within 5 minutes")


async def median_seconds(probe: Callable[[], Awaitable[object]], rounds: int) -> float:
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        await probe()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def get(url: str, token: str) -> bytes:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=120) as answer:  # loopback host
        return bytes(answer.read())


async def console_seconds(host: DevHostProcess, rounds: int) -> float | None:
    chromium = shutil.which("chromium")
    if chromium is None:
        return None
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu"]
        )
        times = []
        for _ in range(rounds):
            page = await browser.new_page()
            await page.goto(host.url("/api/console"))
            started = time.perf_counter()
            await page.click("#sign-in")
            await page.wait_for_function(
                "() => document.body.dataset.rendered === '#/overview'", timeout=120_000
            )
            times.append(time.perf_counter() - started)
            await page.close()
        await browser.close()
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=2400)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with running_azurite() as azurite, EntraIssuer() as issuer:
        issuer.serve_demo_admin_tokens(audience=SERVER_APP_ID)
        async with storage_on(azurite) as storage:
            await write_fleet(storage, args.devices)
            await scan(storage)  # warm: connections, the table
            ceiling = await median_seconds(lambda: scan(storage), args.rounds)
            summarize = await median_seconds(lambda: run_pass(storage), args.rounds)
            env = product_env(azurite.connection_string, AAD_AUTHORITY_HOST=issuer.authority_host)
            with DevHostProcess(env) as host:
                token = issuer.mint_admin_token()
                overview_url = host.url("/api/devices?summary=overview")
                page_url = host.url("/api/devices?pageSize=50")
                # Warm (key fetch, first storage connection); the snapshot is the pass's above.
                await fresh_overview(overview_url, token)
                read = await median_seconds(lambda: point_read(storage), args.rounds)
                overview = await median_seconds(
                    lambda: asyncio.to_thread(get, overview_url, token), args.rounds
                )
                first_page = await median_seconds(
                    lambda: asyncio.to_thread(get, page_url, token), args.rounds
                )
                browser = await console_seconds(host, args.rounds)
    devices = args.devices
    print(f"devices: {devices}")
    print(
        f"ceiling: bare query of the partition with the overview's columns: {ceiling * 1000:.0f} ms"
        f" ({devices / ceiling:.0f} devices/s)"
    )
    print(
        f"summarization pass: {summarize * 1000:.0f} ms ({devices / summarize:.0f} devices/s, "
        f"{summarize / ceiling:.1f}x the query)"
    )
    print(f"ceiling: bare point read of the snapshot row: {read * 1000:.1f} ms")
    print(f"GET /api/devices?summary=overview (the snapshot): {overview * 1000:.1f} ms")
    print(f"GET /api/devices?pageSize=50: {first_page * 1000:.0f} ms")
    if browser is not None:
        print(f"console: sign-in click to rendered overview: {browser * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
