"""The resolved-profiles rebuild as the queued job it is: a tiny time budget continues through
discovery-continue messages to exactly the rows of a one-shot rebuild, a rebuild killed with its
lease held is finished once the lease expires, a burst of changes queues one job, overlapping
profiles and paths keep the better-ranked one across continuation boundaries, and a cycle of
nested groups ends the walk. Against the module's own Azurite (the tests read its queue)."""

from __future__ import annotations

import asyncio
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.data.tables import TableTransactionError

from devhost.azurite import StorageAccount
from shared.discovery import parse_continuation
from shared.jobs import Job
from shared.names import AAD_GROUP_MEMBERS, DISCOVERY_CONTINUE_QUEUE, RESOLVED_PROFILES
from shared.profiles import (
    Overrides,
    Profile,
    rebuild_state,
    run_rebuild_job,
    save_profile,
)
from shared.storage import Storage
from tests.discovery.conftest import own_account, own_storage, wait_until
from tests.support.devhost import REPO_ROOT

__all__ = ["own_account", "own_storage"]
# Member pages of 100 here (1,000 in production): 150 users are a continuation inside a group.
MEMBER_PAGE = 100
BIG_GROUP = 150


def guid() -> str:
    return str(uuid.uuid4())


@dataclass(frozen=True)
class Directory:
    """Groups as group discovery writes them, and the profiles over them."""

    profiles: list[Profile]
    top: str
    left: str
    right: str
    inner: str
    overlap: str  # a user in `left` and `inner` (one profile, two paths) and in `beta`'s group
    tied: str  # a user in `alpha`'s and `beta`'s groups (equal priority: the name decides)
    best: str  # a user that `first` (priority 1) reaches as well as `alpha`


async def write_members(storage: Storage, group: str, members: dict[str, str]) -> None:
    table = await storage.table(AAD_GROUP_MEMBERS)
    rows = [
        {"PartitionKey": group, "RowKey": member, "memberType": kind, "isDeleted": False}
        for member, kind in members.items()
    ]
    await asyncio.gather(
        *(
            table.submit_transaction([("upsert", row) for row in rows[i : i + 100]])
            for i in range(0, len(rows), 100)
        )
    )


@pytest.fixture(scope="module")
async def directory(own_storage: Storage) -> Directory:
    """top > left, right; left > inner; right > inner; inner > top (a cycle). `alpha` (5) on
    top, `beta` (5) on a flat group, `first` (1) on another; users overlap between them."""
    top, left, right, inner, flat, few = (guid() for _ in range(6))
    overlap, tied, best = guid(), guid(), guid()
    big = {guid(): "user" for _ in range(BIG_GROUP)}
    await write_members(own_storage, top, {left: "group", right: "group", guid(): "device"})
    await write_members(own_storage, left, {inner: "group", overlap: "user", best: "user"} | big)
    await write_members(own_storage, right, {inner: "group", tied: "user", guid(): "device"})
    await write_members(own_storage, inner, {top: "group", overlap: "user", guid(): "user"})
    await write_members(own_storage, flat, {overlap: "user", tied: "user", guid(): "user"})
    await write_members(own_storage, few, {best: "user", guid(): "device"})
    profiles = [
        Profile("beta", flat, 5, Overrides(site_code="BET")),
        Profile("alpha", top, 5, Overrides(site_code="ALP")),
        Profile("first", few, 1, Overrides(site_code="FST")),
    ]
    return Directory(profiles, top, left, right, inner, overlap, tied, best)


async def save_all(storage: Storage, tenant: str, directory: Directory) -> None:
    for profile in directory.profiles:
        await save_profile(tenant, profile, updated_by="admin", storage=storage)


async def member_rows(storage: Storage, tenant: str) -> dict[str, dict[str, Any]]:
    """The current generation's rows, as the lookup and `explain` read them."""
    state = await rebuild_state(tenant, storage)
    table = await storage.table(RESOLVED_PROFILES)
    rows = table.query_entities("PartitionKey eq @p", parameters={"p": f"{tenant}|{state.current}"})
    return {
        row["RowKey"]: {k: v for k, v in row.items() if k != "PartitionKey"} async for row in rows
    }


@pytest.fixture(scope="module")
async def one_shot(own_storage: Storage, directory: Directory) -> dict[str, dict[str, Any]]:
    """The rows of one uninterrupted rebuild of the directory."""
    tenant = guid()
    await save_all(own_storage, tenant, directory)
    assert (
        await run_rebuild_job(tenant, own_storage, budget_seconds=60, member_page=MEMBER_PAGE)
        == "done"
    )
    return await member_rows(own_storage, tenant)


async def take_messages(storage: Storage, tenant: str) -> AsyncIterator[Job]:
    """This tenant's visible job messages, each deleted once yielded (others' stay)."""
    queue = await storage.queue(DISCOVERY_CONTINUE_QUEUE)
    async for message in queue.receive_messages(max_messages=32, visibility_timeout=5):
        parsed = parse_continuation(message.content)
        if isinstance(parsed, Job) and parsed.tenant_id == tenant:
            await queue.delete_message(message)
            yield parsed


def test_the_one_shot_rows_are_what_the_ranks_say(
    one_shot: dict[str, dict[str, Any]], directory: Directory
) -> None:
    d = directory
    assert one_shot[d.best]["profile"] == "first"  # priority 1 beats alpha's 5
    assert one_shot[d.tied]["profile"] == "alpha"  # 5 and 5: "alpha" before "beta"
    overlap = one_shot[d.overlap]
    assert overlap["profile"] == "alpha"
    assert overlap["path"] == f'["{d.top}","{d.left}"]'  # one level up beats two
    assert len(one_shot) == BIG_GROUP + 8  # every user and device once; the cycle ended


async def test_a_tiny_budget_continues_through_the_queue_to_the_one_shot_rows(
    own_storage: Storage, directory: Directory, one_shot: dict[str, dict[str, Any]]
) -> None:
    tenant = guid()
    await save_all(own_storage, tenant, directory)
    statuses: list[str] = []
    for _ in range(100):  # bounded: 3 profiles, 7 groups, 2 pages in the big one
        async for job in take_messages(own_storage, tenant):
            assert job == Job(tenant, "profiles")
            statuses.append(
                await run_rebuild_job(
                    tenant, own_storage, budget_seconds=0, member_page=MEMBER_PAGE
                )
            )
        if (await rebuild_state(tenant, own_storage)).up_to_date:
            break
    assert statuses.count("continued") >= 6  # one page (or a flip) per invocation
    assert await member_rows(own_storage, tenant) == one_shot


async def test_a_burst_of_changes_queues_one_job(
    own_storage: Storage, directory: Directory
) -> None:
    tenant = guid()
    profile = directory.profiles[0]
    await asyncio.gather(
        *(
            save_profile(tenant, profile, updated_by=f"admin-{i}", storage=own_storage)
            for i in range(10)
        )
    )
    state = await rebuild_state(tenant, own_storage)
    assert (state.requested, state.up_to_date) == (10, False)
    assert [job async for job in take_messages(own_storage, tenant)] == [Job(tenant, "profiles")]
    assert (
        await run_rebuild_job(tenant, own_storage, budget_seconds=60, member_page=MEMBER_PAGE)
        == "done"
    )
    assert (await rebuild_state(tenant, own_storage)).up_to_date


KILLABLE = """
import asyncio, sys
from shared.profiles import run_rebuild_job
from shared.storage import Storage, StorageConfig

async def main() -> None:
    storage = Storage(StorageConfig(connection_string=sys.argv[1]))
    # Pages of 5 members: slow enough to be killed half-way.
    await run_rebuild_job(
        sys.argv[2], storage, budget_seconds=600, lease_seconds=3, member_page=5
    )

asyncio.run(main())
"""


async def test_a_rebuild_killed_with_its_lease_held_is_finished_after_the_lease_expires(
    own_account: StorageAccount,
    own_storage: Storage,
    directory: Directory,
    one_shot: dict[str, dict[str, Any]],
) -> None:
    tenant = guid()
    await save_all(own_storage, tenant, directory)
    table = await own_storage.table(RESOLVED_PROFILES)

    async def claims_written() -> bool:
        building = (await table.get_entity("~rebuild", tenant)).get("building")
        if not building:
            return False
        rows = table.query_entities("PartitionKey eq @p", parameters={"p": f"{tenant}|{building}"})
        return any([True async for _ in rows])

    worker = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLABLE, own_account.connection_string, tenant, cwd=REPO_ROOT
    )
    try:
        await wait_until(claims_written, 20, "the first claims of the killed rebuild")
        assert worker.returncode is None, "the rebuild finished before it could be killed"
    finally:
        worker.kill()  # SIGKILL: no release, no checkpoint
        await asyncio.wait_for(worker.wait(), 10)
    assert not (await rebuild_state(tenant, own_storage)).up_to_date
    assert (
        await run_rebuild_job(tenant, own_storage, budget_seconds=60, member_page=MEMBER_PAGE)
        == "busy"
    )

    async def lease_expired() -> bool:
        row = await table.get_entity("~rebuild", tenant)
        return bool(row["leaseUntil"] < datetime.now(UTC))

    await wait_until(lease_expired, 10, "the dead rebuild's lease to expire")
    assert (
        await run_rebuild_job(tenant, own_storage, budget_seconds=60, member_page=MEMBER_PAGE)
        == "done"
    )
    assert await member_rows(own_storage, tenant) == one_shot


async def test_a_transaction_conflict_names_its_index(own_storage: Storage) -> None:
    """What the claims rely on: a failed insert transaction says which row conflicted."""
    table = await own_storage.table(RESOLVED_PROFILES)
    partition = guid()
    rows = [{"PartitionKey": partition, "RowKey": f"r{i}"} for i in range(5)]
    await table.create_entity(rows[3])
    with pytest.raises(TableTransactionError) as failed:
        await table.submit_transaction([("create", row) for row in rows])
    assert (failed.value.status_code, failed.value.index) == (409, 3)
