"""Fixtures for discovery: the loopback managed identity and Graph, a fresh tenant per test."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from typing import Any

import pytest

from devhost.azurite import StorageAccount
from devtools.fakes.graph import FakeGraph, expected_rows
from devtools.fakes.identity import FakeManagedIdentity
from shared.discovery import DiscoveryConfig
from shared.names import AAD_USERS, DISCOVERY_RUNS, DISCOVERY_STATE
from shared.storage import Storage
from tests.support.storage import storage_on

# Columns the product adds to Graph's; everything else must equal the directory.
BOOKKEEPING = {"PartitionKey", "RowKey", "lastDiscoveredAt", "lastSeenRunId"}


@pytest.fixture(scope="module")
def own_account(new_account: Callable[[], StorageAccount]) -> StorageAccount:
    """A module's own storage account: its hosts poll queues that other tests' hosts must not
    drain."""
    return new_account()


@pytest.fixture(scope="module")
async def own_storage(own_account: StorageAccount) -> AsyncIterator[Storage]:
    async with storage_on(own_account) as storage:
        yield storage


@pytest.fixture(scope="session")
def identity() -> Iterator[FakeManagedIdentity]:
    with FakeManagedIdentity() as server:
        yield server


@pytest.fixture
def managed_identity_env(
    identity: FakeManagedIdentity, monkeypatch: pytest.MonkeyPatch
) -> FakeManagedIdentity:
    """The App Service managed-identity variables, as Azure sets them for the worker."""
    for name, value in identity.environment().items():
        monkeypatch.setenv(name, value)
    return identity


@pytest.fixture
def tenant() -> str:
    return str(uuid.uuid4())


# Small pages: a few hundred users give as many pages as a real tenant's thousands.
LIST_PAGE = 100


def make_graph(identity: FakeManagedIdentity, users: int, **kwargs: Any) -> FakeGraph:
    return FakeGraph(identity, users=users, seed=str(uuid.uuid4()), **kwargs)


def config_for(graph: FakeGraph, tenant: str, **overrides: Any) -> DiscoveryConfig:
    values: dict[str, Any] = {
        "tenant_id": tenant,
        "graph_base_url": graph.graph_base_url,
        "time_budget_seconds": 60,
        "lease_seconds": 60,
        "list_page_size": LIST_PAGE,
    }
    return DiscoveryConfig(**(values | overrides))


async def user_rows(storage: Storage, tenant: str) -> dict[str, dict[str, Any]]:
    """The tenant's AadUsers rows without bookkeeping columns; checks the column types."""
    table = await storage.table(AAD_USERS)
    rows: dict[str, dict[str, Any]] = {}
    async for row in table.query_entities("PartitionKey eq @t", parameters={"t": tenant}):
        assert isinstance(row["isDeleted"], bool)
        assert isinstance(row.get("accountEnabled", False), bool)
        assert isinstance(row["lastDiscoveredAt"], datetime)
        rows[row["RowKey"]] = {k: v for k, v in row.items() if k not in BOOKKEEPING}
    return rows


async def assert_mirrors(storage: Storage, tenant: str, graph: FakeGraph) -> None:
    """AadUsers equals the directory: live users column for column, the rest deleted."""
    rows = await user_rows(storage, tenant)
    expected = expected_rows(graph.live_users())
    live = {k: v for k, v in rows.items() if not v.get("isDeleted")}
    assert live == expected
    removed = set(rows) - set(live)
    assert removed <= graph.removed_ids()


async def run_rows(storage: Storage, tenant: str) -> list[dict[str, Any]]:
    table = await storage.table(DISCOVERY_RUNS)
    return [
        dict(row)
        async for row in table.query_entities("PartitionKey eq @t", parameters={"t": tenant})
    ]


async def state_row(storage: Storage, tenant: str, resource: str = "users") -> dict[str, Any]:
    table = await storage.table(DISCOVERY_STATE)
    return dict(await table.get_entity(tenant, resource))


async def wait_until(predicate: Any, within: float, what: str) -> Any:
    """Poll an async predicate until it returns something truthy, within `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {within}s: {what}")
        await asyncio.sleep(0.1)  # polling storage; bounded by the deadline
