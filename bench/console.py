"""Admin console: the fleet overview and a device page next to the raw partition scan ceiling.

    .venv/bin/python -m bench.console [--devices 2400] [--rounds 3]

1. Ceiling: one query of the tenant's `DeviceStatus` partition with the overview's columns,
   straight into Azurite with the product's storage clients (the read no overview can avoid).
2. `GET /api/devices?summary=overview` through the development host (token validation, the
   explainer on every row), and the first page of the device list (50 devices).
3. With Chromium installed: sign-in click to the rendered overview in the console.
The fleet is the `make run` demo fleet, repeated; rows are written straight into `DeviceStatus`.
Prints one line per figure (median of `--rounds`). Azure Table storage serves a partition scan at
up to 1,000 entities per page; the overview reads the whole partition, so it grows with the fleet.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from devhost.azurite import running_azurite
from devtools.demo_fleet import demo_reports
from devtools.fakes.entra import EntraIssuer
from shared.names import DEVICE_STATUS
from shared.reports import OVERVIEW_COLUMNS, latest_properties, parse_report
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
            ceiling = await median_seconds(lambda: scan(storage), args.rounds)
            env = product_env(azurite.connection_string, AAD_AUTHORITY_HOST=issuer.authority_host)
            with DevHostProcess(env) as host:
                token = issuer.mint_admin_token()
                overview_url = host.url("/api/devices?summary=overview")
                page_url = host.url("/api/devices?pageSize=50")
                get(overview_url, token)  # warm: key fetch, first storage connection
                overview = await median_seconds(
                    lambda: asyncio.to_thread(get, overview_url, token), args.rounds
                )
                first_page = await median_seconds(
                    lambda: asyncio.to_thread(get, page_url, token), args.rounds
                )
                browser = await console_seconds(host, args.rounds)
    print(f"devices: {args.devices}")
    print(f"ceiling: partition scan with the overview's columns: {ceiling * 1000:.0f} ms")
    print(
        f"GET /api/devices?summary=overview: {overview * 1000:.0f} ms "
        f"({overview / ceiling:.1f}x the scan)"
    )
    print(f"GET /api/devices?pageSize=50: {first_page * 1000:.0f} ms")
    if browser is not None:
        print(f"console: sign-in click to rendered overview: {browser * 1000:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
