"""`ResolvedProfiles`: the profile each user and device gets, so a bundle costs point reads.

Why a derived table: the profile of a device is the best-ranked profile whose group holds it
directly or through nested groups. Answering that at bundle time means walking membership
upwards, and `AadGroupMembers` is keyed group -> member, so the walk would be a scan per
level. Instead the answer is precomputed per member:

    PartitionKey tenant id, RowKey member object id (a user's or a device's)
    profile, priority, groupId (the profile's group), path (JSON: the group ids from the
    profile's group down to the member's own group), memberType, overrides (the profile's
    ccmsetup values, JSON), generation

A bundle reads the device's row and, with a user token, the user's row: one or two point reads
side by side, never Graph; the better-ranked of the two applies (`Profile.rank`: priority, then
name, so ties are decided the same way everywhere).

Rebuild (`request_rebuild`), after every profile PUT/DELETE and every group discovery run that
succeeds: the profiles are taken best first; each one's group is walked breadth-first down
`AadGroupMembers` (live rows only; a visited set stops cycles); the first profile to reach a
user or device claims it. Every claimed row is upserted with the rebuild's `generation`, then
rows of older generations are deleted (members that no profile reaches any more). Re-running it
gives the same rows: it is idempotent, and a rebuild that dies half-way is finished by the next.

Exactly one rebuild runs per tenant: a state row (PartitionKey `~rebuild`, RowKey tenant) holds
`requested` and `built` counters and an ETag-conditioned lease. A request bumps `requested`;
whoever takes the lease rebuilds, records the `requested` it started from as `built`, and
rebuilds again if more requests came meanwhile, so a burst of PUTs costs at most two rebuilds.
A request that finds the lease held returns at once: the holder picks it up. `upToDate` in the
resolve answer is `built == requested`.

Memory: the claimed member ids of one rebuild (~100 bytes each: 10 MB per 100,000 members) and
the visited groups of one profile; rows are written in 100-operation transactions, 4 in flight.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableEntity, TransactionOperation, UpdateMode
from azure.data.tables.aio import TableClient

from shared.names import AAD_GROUP_MEMBERS, INSTALL_PROFILES, RESOLVED_PROFILES
from shared.profiles._model import Overrides, Profile
from shared.profiles._store import ProfileStore
from shared.storage import Storage, get_storage, translate_errors

STATE_PARTITION: Final = "~rebuild"
LEASE_SECONDS: Final = 300
TRANSACTION_LIMIT: Final = 100  # a table transaction's limit
TRANSACTIONS_IN_FLIGHT: Final = 4  # ~1,000 upserts/s on Azurite (docs/contract.md facts)
RENEW_EVERY_ROWS: Final = 5000
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Resolution:
    """The profile one member gets, and why."""

    member_id: str
    member_type: str
    profile: str
    priority: int
    group_id: str
    path: tuple[str, ...]  # profile's group first, the member's own group last
    overrides: Overrides

    @property
    def rank(self) -> tuple[int, str]:
        return (self.priority, self.profile)


async def lookup(
    tenant_id: str, member_ids: Sequence[str], storage: Storage | None = None
) -> list[Resolution]:
    """The rows of these members (device and/or user object ids): one point read each, side by
    side. A member no profile reaches has no row."""
    table = await (storage or get_storage()).table(RESOLVED_PROFILES)
    rows = await asyncio.gather(*(_point_read(table, tenant_id, m) for m in member_ids if m))
    return [row for row in rows if row is not None]


def best(resolutions: Sequence[Resolution]) -> Resolution | None:
    return min(resolutions, key=lambda r: r.rank, default=None)


async def _point_read(table: TableClient, tenant_id: str, member_id: str) -> Resolution | None:
    try:
        async with translate_errors():
            row = await table.get_entity(tenant_id, member_id)
    except ResourceNotFoundError:
        return None
    return Resolution(
        member_id=member_id,
        member_type=str(row.get("memberType") or ""),
        profile=row["profile"],
        priority=int(row["priority"]),
        group_id=row["groupId"],
        path=tuple(json.loads(row.get("path") or "[]")),
        overrides=Overrides.deserialize(row.get("overrides") or ""),
    )


@dataclass(frozen=True, slots=True)
class RebuildState:
    requested: int
    built: int

    @property
    def up_to_date(self) -> bool:
        return self.built >= self.requested


async def rebuild_state(tenant_id: str, storage: Storage | None = None) -> RebuildState:
    table = await (storage or get_storage()).table(RESOLVED_PROFILES)
    try:
        async with translate_errors():
            row = await table.get_entity(STATE_PARTITION, tenant_id)
    except ResourceNotFoundError:
        return RebuildState(0, 0)
    return RebuildState(int(row.get("requested", 0)), int(row.get("built", 0)))


async def request_rebuild(
    tenant_id: str, storage: Storage | None = None, *, changed: bool = True
) -> bool:
    """Ask for a rebuild (`changed`: memberships or profiles changed) and run it here unless
    another invocation holds the lease; without `changed`, only finish one still owed (a
    rebuild that failed or whose holder died). True when this call left the table up to date."""
    storage = storage or get_storage()
    lease = _Lease(await storage.table(RESOLVED_PROFILES), tenant_id)
    if changed:
        await lease.bump_requested()
    while True:
        target = await lease.acquire()
        if target is None:  # nothing owed, or the holder sees the request when it finishes
            return lease.up_to_date
        try:
            rows = await _Rebuild(storage, tenant_id, lease).run()
        except BaseException:
            await lease.release(built=None)
            raise
        remaining = await lease.release(built=target)
        _log.info("resolved profiles rebuilt", extra={"tenantId": tenant_id, "rows": rows})
        if remaining is None or remaining <= target:
            return remaining is not None


class _Lease:
    """The state row: `requested`, `built`, `leaseOwner`, `leaseUntil`, written with ETags."""

    def __init__(self, table: TableClient, tenant_id: str) -> None:
        self._table = table
        self._tenant_id = tenant_id
        self._owner = uuid.uuid4().hex
        self.up_to_date = False

    async def _read(self) -> TableEntity | None:
        try:
            async with translate_errors():
                return await self._table.get_entity(STATE_PARTITION, self._tenant_id)
        except ResourceNotFoundError:
            return None

    async def _write(self, row: TableEntity | None, changes: dict[str, Any]) -> bool:
        """False when another writer got in first (re-read and try again)."""
        entity = {"PartitionKey": STATE_PARTITION, "RowKey": self._tenant_id}
        try:
            async with translate_errors():
                if row is None:
                    await self._table.create_entity(entity | changes)
                else:
                    await self._table.update_entity(
                        {**row, **changes, **entity},
                        mode=UpdateMode.REPLACE,
                        etag=row.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
        except (ResourceExistsError, ResourceModifiedError):
            return False
        except HttpResponseError as error:
            if error.status_code == 412:
                return False
            raise
        return True

    async def _change(
        self, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any]:
        """Apply `change` to the state row (re-read on a conflict); the state afterwards."""
        for _ in range(100):
            row = await self._read()
            current = _state(row)
            changes = change(current)
            if changes is None:
                return current
            if await self._write(row, changes):
                return current | changes
        raise TimeoutError("the resolved-profiles state row stayed busy")

    async def bump_requested(self) -> None:
        await self._change(lambda s: {"requested": s["requested"] + 1})

    async def acquire(self) -> int | None:
        """The `requested` count to rebuild for, or None when another holder has the lease or
        nothing is left to do."""
        now = datetime.now(UTC)

        def take(state: dict[str, Any]) -> dict[str, Any] | None:
            held = state["leaseOwner"] and state["leaseUntil"] > now
            if (held and state["leaseOwner"] != self._owner) or state["built"] >= state[
                "requested"
            ]:
                return None
            return {"leaseOwner": self._owner, "leaseUntil": now + timedelta(seconds=LEASE_SECONDS)}

        state = await self._change(take)
        self.up_to_date = state["built"] >= state["requested"]
        return state["requested"] if state["leaseOwner"] == self._owner else None

    async def renew(self) -> None:
        until = datetime.now(UTC) + timedelta(seconds=LEASE_SECONDS)

        def extend(state: dict[str, Any]) -> dict[str, Any] | None:
            if state["leaseOwner"] != self._owner:
                raise LeaseLost("another invocation took the resolved-profiles lease")
            return {"leaseUntil": until}

        await self._change(extend)

    async def release(self, *, built: int | None) -> int | None:
        """Free the lease (recording `built`); the `requested` count then, or None if the lease
        was lost."""

        def free(state: dict[str, Any]) -> dict[str, Any] | None:
            if state["leaseOwner"] != self._owner:
                return None
            changes: dict[str, Any] = {"leaseOwner": "", "leaseUntil": datetime.now(UTC)}
            if built is not None:
                changes["built"] = max(built, state["built"])
            return changes

        state = await self._change(free)
        return int(state["requested"]) if state["leaseOwner"] == "" else None


class LeaseLost(Exception):
    """The rebuild ran past its lease and another invocation took it over."""


def _state(row: dict[str, Any] | None) -> dict[str, Any]:
    row = row or {}
    until = row.get("leaseUntil")
    return {
        "requested": int(row.get("requested", 0)),
        "built": int(row.get("built", 0)),
        "leaseOwner": str(row.get("leaseOwner") or ""),
        "leaseUntil": until if isinstance(until, datetime) else datetime.min.replace(tzinfo=UTC),
    }


class _Rebuild:
    def __init__(self, storage: Storage, tenant_id: str, lease: _Lease) -> None:
        self._storage = storage
        self._tenant_id = tenant_id
        self._lease = lease
        self._generation = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f") + uuid.uuid4().hex[:8]
        self._slots = asyncio.Semaphore(TRANSACTIONS_IN_FLIGHT)
        self._pending: list[tuple[TransactionOperation, dict[str, Any], dict[str, Any]]] = []
        self._writes: list[asyncio.Task[None]] = []
        self._rows = 0

    async def run(self) -> int:
        """Rebuild every row; the number of members that got a profile."""
        self._table = await self._storage.table(RESOLVED_PROFILES)
        self._members = await self._storage.table(AAD_GROUP_MEMBERS)
        store = ProfileStore(await self._storage.table(INSTALL_PROFILES), self._tenant_id)
        claimed: set[str] = set()
        for profile in await store.all():
            await self._walk(profile, claimed)
            await self._lease.renew()
        await self._flush(final=True)
        await self._sweep()
        return len(claimed)

    async def _walk(self, profile: Profile, claimed: set[str]) -> None:
        overrides = profile.overrides.serialize()
        parents: dict[str, str | None] = {profile.group_id: None}
        queue = deque([profile.group_id])
        while queue:
            group_id = queue.popleft()
            async with translate_errors():
                members = [
                    row
                    async for row in self._members.query_entities(
                        "PartitionKey eq @group and isDeleted eq false",
                        parameters={"group": group_id},
                        select=["RowKey", "memberType"],
                        results_per_page=1000,
                    )
                ]
            for row in members:
                member_id, member_type = row["RowKey"], row.get("memberType")
                if member_type == "group":
                    if member_id not in parents:
                        parents[member_id] = group_id
                        queue.append(member_id)
                elif member_type in ("user", "device") and member_id not in claimed:
                    claimed.add(member_id)
                    path = _path(parents, group_id)
                    await self._upsert(profile, member_id, member_type, path, overrides)

    async def _upsert(
        self, profile: Profile, member_id: str, member_type: str, path: list[str], overrides: str
    ) -> None:
        entity = {
            "PartitionKey": self._tenant_id,
            "RowKey": member_id,
            "memberType": member_type,
            "profile": profile.name,
            "priority": profile.priority,
            "groupId": profile.group_id,
            "path": json.dumps(path, separators=(",", ":")),
            "overrides": overrides,
            "generation": self._generation,
        }
        self._pending.append((TransactionOperation.UPSERT, entity, {"mode": UpdateMode.REPLACE}))
        self._rows += 1
        if len(self._pending) == TRANSACTION_LIMIT:
            await self._flush()
        if self._rows % RENEW_EVERY_ROWS == 0:
            await self._lease.renew()

    async def _flush(self, *, final: bool = False) -> None:
        if self._pending:
            batch, self._pending = self._pending, []
            await self._slots.acquire()
            self._writes.append(asyncio.create_task(self._submit(batch)))
        if final or len(self._writes) >= TRANSACTIONS_IN_FLIGHT * 4:
            writes, self._writes = self._writes, []
            await asyncio.gather(*writes)

    async def _submit(
        self, batch: list[tuple[TransactionOperation, dict[str, Any], dict[str, Any]]]
    ) -> None:
        try:
            async with translate_errors():
                await self._table.submit_transaction(batch)
        finally:
            self._slots.release()

    async def _sweep(self) -> None:
        """Rows an older generation wrote and this one did not: members no profile reaches."""
        stale = self._table.query_entities(
            "PartitionKey eq @tenant and generation ne @generation",
            parameters={"tenant": self._tenant_id, "generation": self._generation},
            select=["RowKey"],
            results_per_page=1000,
        )
        async with translate_errors():
            async for row in stale:
                entity = {"PartitionKey": self._tenant_id, "RowKey": row["RowKey"]}
                self._pending.append((TransactionOperation.DELETE, entity, {}))
                if len(self._pending) == TRANSACTION_LIMIT:
                    await self._flush()
        await self._flush(final=True)


def _path(parents: dict[str, str | None], group_id: str) -> list[str]:
    """The group ids from the profile's group down to `group_id`."""
    path: list[str] = []
    current: str | None = group_id
    while current is not None:
        path.append(current)
        current = parents[current]
    return path[::-1]
