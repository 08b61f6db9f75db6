"""Discovery throughput: a full run of 20,000 users, then a delta of 10 changes; then groups:
2,000 security groups with 100,000 memberships, full and delta.

    .venv/bin/python -m bench.discovery [--users 20000] [--groups 2000] [--memberships 100000]
        [--only users|groups|profiles] [--profile-members 100000]

Then the install profiles' rebuild (`--only profiles`): one profile whose group nests 1,000
groups of 100 members (`--profile-members`, default 100,000 users and devices), membership rows
written straight into AadGroupMembers (writing them, batch inserts of 100 with the same
transactions in flight, is the same-run Azurite ceiling), then the rebuild job with a 60 s
budget per invocation, continued as the queue would: rows/s, invocations, and the peak RSS and
the Python heap peak (tracemalloc, a separate run of the same size) of the rebuild.

Against its own Azurite and the loopback Graph + managed-identity fakes (devtools/fakes), in this
process. Prints users/s of the full run next to the raw Azurite ceiling for the same entities
(batch upserts of 100, the same transactions in flight) measured in the same run, peak RSS
during the run, and the Graph requests of the full run and of the delta. For groups:
rows/s (groups + memberships) of the full run beside the ceiling of the same rows written
raw (one transaction per group's members, as a group is one partition), the delta's time and
the Graph requests of each.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import tracemalloc
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import psutil

from devhost.azurite import running_azurite
from devtools.fakes.graph import FakeGraph
from devtools.fakes.graph_groups import MemberType
from devtools.fakes.identity import FakeManagedIdentity
from shared.discovery import (
    TRANSACTION_LIMIT,
    TRANSACTIONS_IN_FLIGHT,
    DiscoveryConfig,
    run_discovery,
)
from shared.names import AAD_GROUP_MEMBERS, AAD_GROUPS, AAD_USERS, RESOLVED_PROFILES
from shared.profiles import Overrides, Profile, rebuild_state, run_rebuild_job, save_profile
from shared.storage import Storage
from tests.support.storage import storage_on

DELTA_CHANGES = 10
GROUP_DELTA_CHANGES = 100  # memberships removed, as many added, a tenth as many groups renamed


async def peak_rss_during(work: Callable[[], Awaitable[Any]]) -> tuple[Any, int]:
    """Run `work`, sampling this process's RSS every 20 ms; returns (result, peak bytes)."""
    process = psutil.Process()
    peak = process.memory_info().rss

    async def sample() -> None:
        nonlocal peak
        while True:
            peak = max(peak, process.memory_info().rss)
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    try:
        result = await work()
    finally:
        sampler.cancel()
    return result, max(peak, process.memory_info().rss)


async def ceiling(storage: Storage, graph: FakeGraph) -> float:
    """Raw batch upserts of the same entities, 100 a transaction, same concurrency."""
    table = await storage.table(AAD_USERS)
    tenant = str(uuid.uuid4())
    now = datetime.now(UTC)
    entities = [
        {"PartitionKey": tenant, "RowKey": user_id}
        | {k: v for k, v in props.items() if v is not None}
        | {"isDeleted": False, "lastDiscoveredAt": now, "lastSeenRunId": "ceiling"}
        for user_id, props in graph.live_users().items()
    ]
    chunks = [
        entities[i : i + TRANSACTION_LIMIT] for i in range(0, len(entities), TRANSACTION_LIMIT)
    ]
    slots = asyncio.Semaphore(TRANSACTIONS_IN_FLIGHT)

    async def send(chunk: list[dict[str, Any]]) -> None:
        async with slots:
            await table.submit_transaction([("upsert", e, {"mode": "replace"}) for e in chunk])

    started = time.perf_counter()
    await asyncio.gather(*(send(chunk) for chunk in chunks))
    return len(entities) / (time.perf_counter() - started)


async def full_run(storage: Storage, graph: FakeGraph) -> tuple[str, float, int]:
    tenant = str(uuid.uuid4())
    config = DiscoveryConfig(tenant, graph.graph_base_url, 3600, 600)
    graph.stats.requests.clear()
    started = time.perf_counter()
    result = await run_discovery("full", "bench", config, storage=storage)
    elapsed = time.perf_counter() - started
    assert result.status == "succeeded", result
    return tenant, elapsed, sum(graph.stats.requests.values())


async def users_bench(users: int) -> None:
    with (
        running_azurite() as azurite,
        FakeManagedIdentity() as identity,
        FakeGraph(identity, users=users, label="Bench", seed="bench") as graph,
    ):
        os.environ.update(identity.environment())
        async with storage_on(azurite) as storage:
            await storage.table(AAD_USERS)
            ceiling_before = await ceiling(storage, graph)
            baseline = psutil.Process().memory_info().rss
            (tenant, elapsed, requests), peak = await peak_rss_during(
                lambda: full_run(storage, graph)
            )
            rate = users / elapsed
            # The machine is shared and noisy: measure the ceiling on both sides, keep the best.
            ceiling_rate = max(ceiling_before, await ceiling(storage, graph))
            ids = graph.user_ids(DELTA_CHANGES)
            for index, user_id in enumerate(ids):
                graph.update_user(user_id, displayName=f"Changed {index}")
            graph.stats.requests.clear()
            config = DiscoveryConfig(tenant, graph.graph_base_url, 3600, 600)
            started = time.perf_counter()
            delta = await run_discovery("delta", "bench", config, storage=storage)
            delta_seconds = time.perf_counter() - started
            delta_requests = sum(graph.stats.requests.values())
    print(f"full discovery, {users} users (latest-then-list): {elapsed:.1f} s, {rate:.0f} users/s")
    print(
        f"raw Azurite batch-upsert ceiling, same entities: {ceiling_rate:.0f} users/s "
        "(best of one measurement before and one after the run)"
    )
    print(f"ratio: {rate / ceiling_rate:.2f} (goal >= 0.8)")
    print(
        f"peak RSS during the full run: {peak / 2**20:.0f} MiB "
        f"({(peak - baseline) / 2**20:+.0f} MiB over the {baseline / 2**20:.0f} MiB before it, "
        "which holds the fake directory)"
    )
    print(f"full run Graph requests: {requests}")
    print(
        f"delta of {DELTA_CHANGES} changes: {delta.status}, {delta_requests} Graph request(s), "
        f"{delta_seconds:.2f} s"
    )


def build_groups(graph: FakeGraph, groups: int, memberships: int) -> list[str]:
    """`groups` security groups sharing `memberships` user memberships evenly (deterministic)."""
    users = graph.user_ids()
    per_group = memberships // groups
    ids = []
    for index in range(groups):
        start = index * 37
        members: dict[str, MemberType] = {
            users[(start + k) % len(users)]: "user" for k in range(per_group)
        }
        ids.append(graph.add_group(f"Bench Group {index:05d}", members=members))
    return ids


async def groups_ceiling(storage: Storage, graph: FakeGraph, group_ids: list[str]) -> float:
    """The same group and membership rows written raw: 100 a transaction, per partition."""
    groups_table = await storage.table(AAD_GROUPS)
    members_table = await storage.table(AAD_GROUP_MEMBERS)
    tenant = str(uuid.uuid4())
    now = datetime.now(UTC)
    batches: list[tuple[Any, list[dict[str, Any]]]] = []
    group_rows = [
        {"PartitionKey": tenant, "RowKey": group_id, "displayName": "x", "securityEnabled": True}
        | {"isDeleted": False, "lastDiscoveredAt": now, "lastSeenRunId": "ceiling"}
        for group_id in group_ids
    ]
    for i in range(0, len(group_rows), TRANSACTION_LIMIT):
        batches.append((groups_table, group_rows[i : i + TRANSACTION_LIMIT]))
    for group_id in group_ids:
        rows = [
            {"PartitionKey": f"{tenant[:8]}{group_id[8:]}", "RowKey": member_id}
            | {"memberType": kind, "tenantId": tenant, "isDeleted": False}
            | {"lastDiscoveredAt": now, "lastSeenRunId": "ceiling"}
            for member_id, kind in graph.live_memberships(group_id).items()
        ]
        for i in range(0, len(rows), TRANSACTION_LIMIT):
            batches.append((members_table, rows[i : i + TRANSACTION_LIMIT]))
    slots = asyncio.Semaphore(TRANSACTIONS_IN_FLIGHT)

    async def send(table: Any, chunk: list[dict[str, Any]]) -> None:
        async with slots:
            await table.submit_transaction([("upsert", e, {"mode": "replace"}) for e in chunk])

    total = sum(len(chunk) for _, chunk in batches)
    started = time.perf_counter()
    await asyncio.gather(*(send(table, chunk) for table, chunk in batches))
    return total / (time.perf_counter() - started)


async def groups_bench(users: int, groups: int, memberships: int) -> None:
    with (
        running_azurite() as azurite,
        FakeManagedIdentity() as identity,
        FakeGraph(identity, users=users, label="Bench", seed="bench") as graph,
    ):
        os.environ.update(identity.environment())
        group_ids = build_groups(graph, groups, memberships)
        rows = groups + memberships
        async with storage_on(azurite) as storage:
            ceiling_before = await groups_ceiling(storage, graph, group_ids)
            tenant = str(uuid.uuid4())
            config = DiscoveryConfig(tenant, graph.graph_base_url, 3600, 600, group_scope="all")
            graph.stats.requests.clear()
            baseline = psutil.Process().memory_info().rss
            started = time.perf_counter()
            full, peak = await peak_rss_during(
                lambda: run_discovery("full", "bench", config, resource="groups", storage=storage)
            )
            full_seconds = time.perf_counter() - started
            assert full.status == "succeeded", full
            full_requests = graph.stats.requests["groups"]
            ceiling_after = await groups_ceiling(storage, graph, group_ids)
            users_list = graph.user_ids()
            for index in range(GROUP_DELTA_CHANGES):
                group_id = group_ids[index * 7 % len(group_ids)]
                graph.remove_member(group_id, next(iter(graph.live_memberships(group_id))))
                graph.add_member(
                    group_ids[index * 11 % len(group_ids)], users_list[-1 - index], "user"
                )
            for index in range(GROUP_DELTA_CHANGES // 10):
                graph.rename_group(group_ids[index * 13 % len(group_ids)], f"Renamed {index}")
            graph.stats.requests.clear()
            started = time.perf_counter()
            delta = await run_discovery(
                "delta", "bench", config, resource="groups", storage=storage
            )
            delta_seconds = time.perf_counter() - started
            assert delta.status == "succeeded", delta
            delta_requests = graph.stats.requests["groups"]
    rate = rows / full_seconds
    print(
        f"full group discovery, {groups} groups, {memberships} memberships ({users} users): "
        f"{full_seconds:.1f} s, {rate:.0f} rows/s, {full_requests} Graph requests "
        f"(pages of {graph.group_page_size} entries, members in chunks of {graph.member_chunk})"
    )
    print(
        "raw Azurite batch-upsert ceiling, same rows and partitions: "
        f"{ceiling_before:.0f} rows/s into empty tables before the run, {ceiling_after:.0f} "
        f"rows/s after it (tables growing from {2 * rows} to {3 * rows} rows); the run wrote "
        f"while they grew from {rows} to {2 * rows}: ratio {rate / ceiling_before:.2f} to the "
        f"first, {rate / ceiling_after:.2f} to the second"
    )
    print(
        f"peak RSS during the full group run: {peak / 2**20:.0f} MiB "
        f"({(peak - baseline) / 2**20:+.0f} MiB over the {baseline / 2**20:.0f} MiB before it)"
    )
    print(
        f"group delta of {GROUP_DELTA_CHANGES} removals, {GROUP_DELTA_CHANGES} additions, "
        f"{GROUP_DELTA_CHANGES // 10} renames: {delta_seconds:.2f} s, "
        f"{delta_requests} Graph request(s)"
    )


PROFILE_GROUP_SIZE = 100
PROFILE_BUDGET_SECONDS = 60  # the production time budget of one queue invocation
# Azure Storage's scalability target for one table partition.
AZURE_PARTITION_ENTITIES_PER_SECOND = 2000


async def write_profile_groups(storage: Storage, members: int) -> str:
    """A top group nesting members/100 groups of 100 new users and devices, written raw:
    the top group's id. Returns after the Azurite ceiling for these rows was measured."""
    table = await storage.table(AAD_GROUP_MEMBERS)
    top = str(uuid.uuid4())
    batches: list[list[dict[str, Any]]] = []
    nested = []
    for index in range(max(1, members // PROFILE_GROUP_SIZE)):
        group = str(uuid.uuid4())
        nested.append({"PartitionKey": top, "RowKey": group, "memberType": "group"})
        rows = [
            {"PartitionKey": group, "RowKey": str(uuid.uuid4()), "isDeleted": False}
            | {"memberType": "user" if (index + k) % 2 else "device"}
            for k in range(PROFILE_GROUP_SIZE)
        ]
        batches.append(rows)
    for i in range(0, len(nested), TRANSACTION_LIMIT):
        batches.append([row | {"isDeleted": False} for row in nested[i : i + TRANSACTION_LIMIT]])
    slots = asyncio.Semaphore(TRANSACTIONS_IN_FLIGHT)

    async def send(chunk: list[dict[str, Any]]) -> None:
        async with slots:
            await table.submit_transaction([("create", row) for row in chunk])

    await asyncio.gather(*(send(chunk) for chunk in batches))
    return top


async def rebuild(storage: Storage, tenant: str, top: str) -> int:
    """Save the profile and run its job to the end as the queue would: the invocations."""
    profile = Profile("bench", top, 1, Overrides(site_code="BEN"))
    await save_profile(tenant, profile, updated_by="bench", storage=storage)
    invocations = 0
    while not (await rebuild_state(tenant, storage)).up_to_date:
        invocations += 1
        await run_rebuild_job(tenant, storage, budget_seconds=PROFILE_BUDGET_SECONDS)
    return invocations


async def profiles_bench(members: int) -> None:
    with running_azurite() as azurite:
        async with storage_on(azurite) as storage:
            started = time.perf_counter()
            top = await write_profile_groups(storage, members)
            ceiling_rate = members / (time.perf_counter() - started)
            tenant = str(uuid.uuid4())
            baseline = psutil.Process().memory_info().rss
            started = time.perf_counter()
            invocations, peak = await peak_rss_during(lambda: rebuild(storage, tenant, top))
            seconds = time.perf_counter() - started
            rows = len(await lookup_all(storage, tenant))
            tracemalloc.start()
            await rebuild(storage, str(uuid.uuid4()), top)
            _, heap_peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
    print(
        f"resolved-profiles rebuild, one profile over {members // PROFILE_GROUP_SIZE} nested "
        f"groups: {rows} member rows in {seconds:.1f} s, {rows / seconds:.0f} rows/s, "
        f"{invocations} invocation(s) of {PROFILE_BUDGET_SECONDS} s budget"
    )
    print(
        f"raw Azurite batch-insert ceiling, the same number of membership rows, same run: "
        f"{ceiling_rate:.0f} rows/s (ratio {rows / seconds / ceiling_rate:.2f})"
    )
    print(
        f"production ceiling: a generation is one table partition, and Azure Table storage "
        f"serves up to {AZURE_PARTITION_ENTITIES_PER_SECOND:,} entities/s per partition "
        f"(its scalability target): {rows / AZURE_PARTITION_ENTITIES_PER_SECOND:.0f} s at best"
    )
    print(
        f"rebuild memory: peak RSS {peak / 2**20:.0f} MiB ({(peak - baseline) / 2**20:+.0f} MiB "
        f"over the {baseline / 2**20:.0f} MiB before it); Python heap peak during a second "
        f"rebuild (tracemalloc) {heap_peak / 2**20:.1f} MiB"
    )


async def lookup_all(storage: Storage, tenant: str) -> list[str]:
    """The member rows of the tenant's current generation (a scan: the bench's check only)."""
    state = await rebuild_state(tenant, storage)
    table = await storage.table(RESOLVED_PROFILES)
    rows = table.query_entities(
        "PartitionKey eq @p", parameters={"p": f"{tenant}|{state.current}"}, select=["RowKey"]
    )
    return [row["RowKey"] async for row in rows]


async def main(
    users: int, groups: int, memberships: int, only: str | None, profile_members: int
) -> None:
    if only in (None, "users"):
        await users_bench(users)
    if only in (None, "groups"):
        await groups_bench(users, groups, memberships)
    if only in (None, "profiles"):
        await profiles_bench(profile_members)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--memberships", type=int, default=100_000)
    parser.add_argument("--only", choices=("users", "groups", "profiles"))
    parser.add_argument("--profile-members", type=int, default=100_000)
    arguments = parser.parse_args()
    asyncio.run(
        main(
            arguments.users,
            arguments.groups,
            arguments.memberships,
            arguments.only,
            arguments.profile_members,
        )
    )
