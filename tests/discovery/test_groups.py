"""Group discovery and coalescing, driven directly against the loopback Graph and Azurite.

Small pages (a few groups a page, members split in chunks) so that every path runs: members
across pages, nested groups and devices, removed memberships, deleted groups, scope, 410.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import datetime
from typing import Any

from devtools.fakes.graph import FakeGraph
from devtools.fakes.graph_groups import MemberType
from devtools.fakes.identity import FakeManagedIdentity
from shared.discovery import RunResult, run_discovery
from shared.names import AAD_GROUP_MEMBERS, AAD_GROUPS, DISCOVERY_STATE
from shared.storage import Storage
from tests.discovery.conftest import config_for, make_graph, run_rows, wait_until

BOOKKEEPING = {"PartitionKey", "RowKey", "lastDiscoveredAt", "lastSeenRunId", "tenantId"}


def build_groups(graph: FakeGraph) -> dict[str, str]:
    """Three security groups (one nested in another, one large), an M365 group, a device."""
    users = graph.user_ids()
    device = str(uuid.uuid4())
    ids = {"device": device}
    nested: dict[str, MemberType] = dict.fromkeys(users[:30], "user")
    ids["nested"] = graph.add_group("Nested", members=nested | {device: "device"})
    ids["parent"] = graph.add_group(
        "Parent", members={users[40]: "user", users[41]: "user", ids["nested"]: "group"}
    )
    ids["large"] = graph.add_group("Large", members=dict.fromkeys(users[:95], "user"))
    ids["m365"] = graph.add_group("Team site", security=False, members={users[0]: "user"})
    return ids


async def group_rows(storage: Storage, tenant: str) -> dict[str, dict[str, Any]]:
    table = await storage.table(AAD_GROUPS)
    rows: dict[str, dict[str, Any]] = {}
    async for row in table.query_entities("PartitionKey eq @t", parameters={"t": tenant}):
        assert isinstance(row["isDeleted"], bool)
        assert isinstance(row["lastDiscoveredAt"], datetime)
        rows[row["RowKey"]] = {k: v for k, v in row.items() if k not in BOOKKEEPING}
    return rows


async def member_rows(storage: Storage, group_id: str) -> dict[str, dict[str, Any]]:
    table = await storage.table(AAD_GROUP_MEMBERS)
    query = table.query_entities("PartitionKey eq @g", parameters={"g": group_id})
    return {
        row["RowKey"]: {k: v for k, v in row.items() if k not in BOOKKEEPING} async for row in query
    }


async def assert_groups_mirror(
    storage: Storage, tenant: str, graph: FakeGraph, *, only: set[str] | None = None
) -> None:
    """AadGroups and AadGroupMembers equal the directory's security groups (or `only`)."""
    rows = await group_rows(storage, tenant)
    expected = {
        group_id: props | {"isDeleted": False}
        for group_id, props in graph.live_groups(security_only=True).items()
        if only is None or group_id in only
    }
    assert {k: v for k, v in rows.items() if not v["isDeleted"]} == expected
    for group_id in expected:
        members = await member_rows(storage, group_id)
        live = {k: v["memberType"] for k, v in members.items() if not v["isDeleted"]}
        assert live == graph.live_memberships(group_id)
        assert {k for k, v in members.items() if v["isDeleted"]} <= graph.removed_memberships(
            group_id
        )


async def test_full_then_delta_mirror_groups_members_and_removals(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 100, group_page_size=2, member_chunk=40) as graph:
        ids = build_groups(graph)
        config = config_for(graph, tenant, group_scope="all")
        full = await run_discovery("full", "timer", config, resource="groups", storage=storage)
        assert (full.status, full.mode) == ("succeeded", "full")
        await assert_groups_mirror(storage, tenant, graph)
        assert ids["m365"] not in await group_rows(storage, tenant)  # not a security group
        nested = await member_rows(storage, ids["nested"])
        assert nested[ids["device"]]["memberType"] == "device"
        assert (await member_rows(storage, ids["parent"]))[ids["nested"]]["memberType"] == "group"
        # Large: 95 members in chunks of 40 -> 3 entries; 6 entries at 2 a page -> 3 pages.
        assert graph.stats.requests["groups"] == 3

        removed_user = graph.user_ids()[5]
        graph.remove_member(ids["nested"], removed_user)
        graph.remove_member(ids["large"], removed_user)
        graph.add_member(ids["parent"], graph.user_ids()[60], "user")
        graph.rename_group(ids["large"], "Large (renamed)")
        graph.delete_group(ids["parent"])
        added = graph.add_group("Added later", members={graph.user_ids()[70]: "user"})
        graph.stats.requests.clear()
        delta = await run_discovery("delta", "timer", config, resource="groups", storage=storage)
        assert (delta.status, delta.mode) == ("succeeded", "delta")
        await assert_groups_mirror(storage, tenant, graph)
        assert (await member_rows(storage, ids["nested"]))[removed_user]["isDeleted"] is True
        groups = await group_rows(storage, tenant)
        assert groups[ids["parent"]]["isDeleted"] is True
        assert groups[added]["isDeleted"] is False
        parent_members = await member_rows(storage, ids["parent"])
        assert all(row["isDeleted"] for row in parent_members.values())
        runs = await run_rows(storage, tenant)
        assert [(r["resource"], r["mode"], r["status"]) for r in runs] == [
            ("groups", "delta", "succeeded"),
            ("groups", "full", "succeeded"),
        ]
        state = await (await storage.table(DISCOVERY_STATE)).get_entity(tenant, "groups")
        assert "/groups/delta?" in state["deltaLink"]


async def test_scope_by_ids_asks_graph_for_those_groups_only(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 100, group_page_size=2, member_chunk=40) as graph:
        ids = build_groups(graph)
        chosen = (ids["nested"], ids["m365"])  # named explicitly: kept, security or not
        config = config_for(graph, tenant, group_scope=chosen)
        assert (
            await run_discovery("full", "timer", config, resource="groups", storage=storage)
        ).status == "succeeded"
        rows = await group_rows(storage, tenant)
        assert set(rows) == set(chosen)
        assert rows[ids["m365"]]["securityEnabled"] is False


async def test_expired_group_delta_link_falls_back_to_a_full_run_and_sweeps(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 100, group_page_size=2, member_chunk=40) as graph:
        ids = build_groups(graph)
        config = config_for(graph, tenant, group_scope="all")
        await run_discovery("full", "timer", config, resource="groups", storage=storage)
        gone = graph.user_ids()[3]
        graph.remove_member(ids["nested"], gone)
        graph.delete_group(ids["large"])
        graph.expire_group_delta_links()
        result = await run_discovery("delta", "timer", config, resource="groups", storage=storage)
        assert (result.status, result.mode) == ("succeeded", "full")
        await assert_groups_mirror(storage, tenant, graph)
        # A full round does not mention what is gone: the sweep marks it.
        assert (await member_rows(storage, ids["nested"]))[gone]["isDeleted"] is True
        assert (await group_rows(storage, tenant))[ids["large"]]["isDeleted"] is True
        large = await member_rows(storage, ids["large"])
        assert large
        assert all(row["isDeleted"] for row in large.values())
        run = (await run_rows(storage, tenant))[0]
        assert "syncStateNotFound" in run["fallbackReason"]


async def test_groups_are_not_discovered_when_the_setting_says_none(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 10) as graph:
        config = config_for(graph, tenant)  # DISCOVERY_GROUPS defaults to none
        result = await run_discovery("full", "timer", config, resource="groups", storage=storage)
        assert result.status == "ignored"
        assert graph.stats.requests["groups"] == 0
        assert await run_rows(storage, tenant) == []


async def test_a_burst_of_100_requests_is_one_running_and_one_pending_run(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 300) as graph:
        config = config_for(graph, tenant)
        graph.slow_next(1.0, on="list")
        first = asyncio.create_task(run_discovery("full", "timer", config, storage=storage))

        async def running() -> bool:
            return any(r["status"] == "running" for r in await run_rows(storage, tenant))

        await wait_until(running, 10, "the first run is running")
        # 16 at a time, as the Functions host takes queue messages (batchSize 16).
        slots = asyncio.Semaphore(16)

        async def request() -> RunResult:
            async with slots:
                return await run_discovery("delta", "eventgrid", config, storage=storage)

        burst = await asyncio.gather(*(request() for _ in range(100)))
        assert (await first).status == "succeeded"
        # Every request found the run live, or its pending run queued: none started a run.
        assert {result.status for result in burst} == {"coalesced"}
        pending = await run_discovery("delta", "pending", config, storage=storage)
        assert pending.status == "succeeded"
        runs = await run_rows(storage, tenant)  # newest first
        assert [(r["mode"], r["trigger"], r["requests"]) for r in runs] == [
            ("delta", "eventgrid", 100),
            ("full", "timer", 1),
        ]
        assert runs[1]["finishedAt"] <= runs[0]["startedAt"]  # never overlapping
