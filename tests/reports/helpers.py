"""Helpers of the report tests: a development host on its own storage, HTTP calls, bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from devhost.azurite import Azurite, StorageAccount, running_azurite
from devtools.fakes.entra import EntraIssuer
from shared.names import DEVICE_STATUS_QUEUE
from shared.storage import Storage
from tests.support.devhost import DevHostProcess
from tests.support.settings import TENANT_ID, product_env
from tests.support.storage import storage_on


@dataclass
class Service:
    """A storage account of its own, the product's storage clients on it, and a host serving the
    app on it; `azurite` only when the service has an Azurite of its own (to stop it)."""

    account: StorageAccount
    storage: Storage
    issuer: EntraIssuer
    env: dict[str, str]
    host: DevHostProcess | None = None
    azurite: Azurite | None = None

    def start_host(self, *, script_root: Path | None = None) -> DevHostProcess:
        self.host = DevHostProcess(self.env, script_root=script_root).start()
        return self.host

    def url(self, path: str) -> str:
        assert self.host is not None
        return self.host.url(path)

    def device_token(self) -> str:
        return self.issuer.mint_access_token()

    def admin_token(self) -> str:
        return self.issuer.mint_admin_token()


@contextlib.asynccontextmanager
async def service_on(
    account: StorageAccount, issuer: EntraIssuer, *, start: bool = True, **overrides: str
) -> AsyncIterator[Service]:
    # The user-token path; device proofs have their own tests (tests/device_trust).
    settings = {"BOOTSTRAP_AUTH": "user"} | overrides
    env = product_env(
        account.connection_string, AAD_AUTHORITY_HOST=issuer.authority_host, **settings
    )
    async with storage_on(account) as storage:
        service = Service(account, storage, issuer, env)
        try:
            if start:
                service.start_host()
            yield service
        finally:
            if service.host is not None:
                service.host.stop()


@contextlib.asynccontextmanager
async def service_on_own_azurite(
    issuer: EntraIssuer, *, start: bool = True, **overrides: str
) -> AsyncIterator[Service]:
    """A service whose Azurite the test may stop (a storage outage)."""
    with running_azurite() as azurite:
        async with service_on(azurite.account(), issuer, start=start, **overrides) as service:
            service.azurite = azurite
            yield service


def report(
    *,
    device_id: str | None = None,
    reported_at: datetime | None = None,
    stage: str = "installed",
    **overrides: Any,
) -> dict[str, Any]:
    """A valid report of the test tenant; every call is a new reportId."""
    moment = reported_at or datetime.now(UTC) - timedelta(minutes=1)
    body: dict[str, Any] = {
        "reportId": str(uuid.uuid4()),
        "deviceId": device_id or str(uuid.uuid4()),
        "tenantId": TENANT_ID,
        "hostname": "PC01.contoso.com",
        "stage": stage,
        "azureAdJoined": True,
        "domainJoined": False,
        "ccmsetupExitCode": 0 if stage != "failed" else 1603,
        "clientVersion": "5.00.9128.1000",
        "siteCode": "ABC",
        "reportedAt": moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "dsregcmd": {"AzureAdJoined": "YES", "DomainJoined": "NO"},
    }
    body.update(overrides)
    return body


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if body is not None and "Content-Type" not in (headers or {}):
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return Response(
                answer.status, {k.lower(): v for k, v in answer.headers.items()}, answer.read()
            )
    except urllib.error.HTTPError as error:
        return Response(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


async def wait_for(
    probe: Callable[[], Any], *, within: float, what: str, interval: float = 0.2
) -> Any:
    """Poll `probe` (sync or async) until it returns something truthy; bounded by `within`."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if inspect.isawaitable(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(interval)  # polling storage with a deadline, not a sync sleep
    raise AssertionError(f"timed out after {within}s waiting for {what} (last: {last!r})")


async def fresh_overview(service: Service, *, within: float = 30) -> Any:
    """`GET /api/devices?summary=overview` once a pass has published a snapshot and none is
    running: the first request asks for the pass, the host runs it from `discovery-continue`."""

    def probe() -> Any:
        answer = http(
            "GET", service.url("/api/devices?summary=overview"), token=service.admin_token()
        )
        assert answer.status == 200, answer.body
        body = answer.json()
        return body if body["asOf"] and not body["refreshing"] else None

    return await wait_for(probe, within=within, what="a fresh overview snapshot")


async def rows(storage: Storage, table: str, query: str = "", **parameters: Any) -> list[Any]:
    client = await storage.table(table)
    if not query:
        return [row async for row in client.list_entities()]
    return [row async for row in client.query_entities(query, parameters=parameters)]


async def enqueue(storage: Storage, bodies: list[str]) -> None:
    """Put messages straight on `device-status` (base64, as the host expects), 16 in flight."""
    queue = await storage.queue(DEVICE_STATUS_QUEUE)
    limit = asyncio.Semaphore(16)

    async def send(text: str) -> None:
        async with limit:
            await queue.send_message(text)

    await asyncio.gather(*(send(text) for text in bodies))
