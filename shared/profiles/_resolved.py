"""`ResolvedProfiles`: the profile each user and device gets, so a bundle costs point reads.

Why a derived table: the profile of a device is the best-ranked profile whose group holds it
directly or through nested groups. Answering that at bundle time means walking membership
upwards, and `AadGroupMembers` is keyed group -> member, so the walk would be a scan per
level. Instead the answer is precomputed per member, one partition per generation:

    state row   PartitionKey `~rebuild`, RowKey tenant: requested, built, the lease, `current`
                (the generation lookups read), the checkpoint of the generation being built
    members     PartitionKey `{tenant}|{generation}`, RowKey member object id (a user's or a
                device's): profile, priority, groupId (the profile's group), path (JSON: the group
                ids from the profile's group down to the member's own group), memberType,
                overrides (the profile's ccmsetup values, JSON), seq (the walk position of the
                member's own group: see ranks below)
    work        PartitionKey `{tenant}|{generation}|work`: `v|{profile}|{group}` a group the
                profile's walk reached (its seq), `q|{seq}` the walk's queue (group id and path)

Lookup: the pointer (`current`, cached per process for `POINTER_CACHE_SECONDS` = 10 s, so a
bundle adds at most one pointer read per tenant every 10 s; the instance that flips drops its
own copy at once), then the device's row and, with a user token, the user's row, side by side:
one or two point reads, never Graph; the better-ranked of the two applies (`Profile.rank`:
priority, then name, so ties are decided the same way everywhere). `current` empty means rows
written before generations had partitions (PartitionKey tenant): the first rebuild retires them.

Requests (`request_rebuild`: profile PUT/DELETE, a group run that changed memberships) bump
`requested` and queue one job message (`{"tenant", "job": "profiles"}` on discovery-continue),
unless the lease is held (the holder sees the bump before it lets go) or a message is already on
its way (`queuedAt`, set in the same ETag-conditioned write, so a burst queues one); they return
at once. `upToDate` (resolve answer, PUT answer) is `built >= requested`.

The job (`run_rebuild_job`, in the queue invocation, with a time budget) takes the ETag lease
and builds a new generation that serves the `requested` count it started from (`target`):
profiles best first; each one's group is walked breadth-first down `AadGroupMembers` (live rows
only). The walk's queue and visited groups are rows of the work partition, so memory holds one
page of members (1,000 rows) and a transaction per 100 claims, never the tenant. A group is
visited once per profile (an insert of `v|{profile}|{group}`: a conflict means visited, which
ends cycles). Members are claimed with insert-only transactions of 100; a transaction that
fails on a conflict fails whole and names the failing index: the rows before it go again, the
conflicting row is compared with the row already there, the rest continue. The row with the
lower rank (priority, profile name, seq) stays, whatever order the writes arrive in: so the
best-ranked profile keeps a member, and within a profile the group the breadth-first walk
reached first, exactly as a one-shot walk would decide, while 4 transactions are in flight.

Checkpoint (state row, with the lease renewal, every `CHECKPOINT_SECONDS` and when the budget
is spent): generation, profile (name and priority: a profile changed meanwhile cannot shift
positions), the walk's head and tail seq and the last member RowKey done in the head group.
Everything between two checkpoints is replayed exactly by the next invocation: claims and
visits are inserts that find their own rows (a visited row whose seq is the tail it would get
is this walk's own, written before a crash: it is adopted). When the budget is spent the job
checkpoints, releases the lease and queues its continuation; an invocation that dies leaves the
lease, which expires after `lease_seconds`, and the next request, group run or the redelivered
message finishes the same generation.

A complete generation is made current in one conditional write (`current`, `built`), and the
old generation's partition and the work partition are retired: deleted by the job (100 per
transaction, checkpointed by the `retired` list itself) once `RETIRE_AFTER_SECONDS` = 30 s have
passed since the flip (three pointer-cache lifetimes: no lookup still reads them).

Cost: per group one queue read, one member query, one visit transaction; per 100 members one
insert transaction (plus one transaction per conflict). Measured (`python -m bench.discovery
--only profiles`, this machine, Azurite): a profile over 1,000 nested groups reaching 100,000
members, 52 s (1,924 rows/s) beside 1,965 rows/s for raw batch inserts of as many rows in the
same run (0.98); peak RSS +0 MiB, Python heap peak 4.1 MiB (the old one-shot kept ~10 MB of
member ids per 100,000 members).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, cast

from azure.core import MatchConditions
from azure.core.async_paging import AsyncPageIterator
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableEntity, TableTransactionError, UpdateMode
from azure.data.tables.aio import TableClient

from shared.jobs import Job, send_job
from shared.names import AAD_GROUP_MEMBERS, INSTALL_PROFILES, RESOLVED_PROFILES
from shared.profiles._model import Overrides, Profile
from shared.profiles._store import ProfileStore
from shared.storage import (
    TRANSACTION_LIMIT,
    TRANSACTIONS_IN_FLIGHT,
    Storage,
    get_storage,
    translate_errors,
    write_if_unchanged,
)

STATE_PARTITION: Final = "~rebuild"
LEASE_SECONDS: Final = 300
POINTER_CACHE_SECONDS: Final = 10.0
RETIRE_AFTER_SECONDS: Final = 30
CHECKPOINT_SECONDS: Final = 5.0  # at most a third of the lease (see `_Job`)
MEMBER_PAGE: Final = 1000  # a member query's page: the most rows held at once
STATE_WRITE_ATTEMPTS: Final = 100  # each retry follows another writer's change
EPOCH: Final = datetime(2000, 1, 1, tzinfo=UTC)  # "never" (Azure Tables dates start in 1601)
# A queued job message is taken within seconds; one older than this was lost with its sender.
_QUEUED_WINDOW: Final = timedelta(seconds=LEASE_SECONDS)
JobStatus = Literal["done", "continued", "busy", "idle"]
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


def _partition(tenant_id: str, generation: str) -> str:
    """Where a generation's member rows are ("" : the rows from before generations)."""
    return f"{tenant_id}|{generation}" if generation else tenant_id


def _work_partition(tenant_id: str, generation: str) -> str:
    return f"{tenant_id}|{generation}|work"


# (table url, tenant) -> (monotonic expiry, current generation): one pointer read per tenant
# every POINTER_CACHE_SECONDS per process.
_pointers: dict[tuple[str, str], tuple[float, str]] = {}


async def _current_generation(table: TableClient, tenant_id: str) -> str:
    key = (table.url, tenant_id)
    cached = _pointers.get(key)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    state, _ = await _StateRow(table, tenant_id).read()
    _pointers[key] = (time.monotonic() + POINTER_CACHE_SECONDS, state.current)
    return state.current


async def lookup(
    tenant_id: str,
    member_ids: Sequence[str],
    storage: Storage | None = None,
    *,
    generation: str | None = None,
) -> list[Resolution]:
    """The rows of these members (device and/or user object ids) in the current generation
    (or `generation`): one point read each, side by side. A member no profile reaches has no
    row."""
    table = await (storage or get_storage()).table(RESOLVED_PROFILES)
    if generation is None:
        generation = await _current_generation(table, tenant_id)
    partition = _partition(tenant_id, generation)
    rows = await asyncio.gather(*(_point_read(table, partition, m) for m in member_ids if m))
    return [row for row in rows if row is not None]


def best(resolutions: Sequence[Resolution]) -> Resolution | None:
    return min(resolutions, key=lambda r: r.rank, default=None)


async def _point_read(table: TableClient, partition: str, member_id: str) -> Resolution | None:
    try:
        async with translate_errors():
            row = await table.get_entity(partition, member_id)
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
    current: str = ""

    @property
    def up_to_date(self) -> bool:
        return self.built >= self.requested


async def rebuild_state(tenant_id: str, storage: Storage | None = None) -> RebuildState:
    table = await (storage or get_storage()).table(RESOLVED_PROFILES)
    state, _ = await _StateRow(table, tenant_id).read()
    return RebuildState(state.requested, state.built, state.current)


async def request_rebuild(
    tenant_id: str, storage: Storage | None = None, *, changed: bool = True
) -> RebuildState:
    """Ask for a rebuild (`changed`: memberships or profiles changed) and queue the job that
    does it, unless the lease holder or a queued message will; returns at once. Without
    `changed`, only queue a rebuild still owed whose job died (its lease expired)."""
    storage = storage or get_storage()
    row = _StateRow(await storage.table(RESOLVED_PROFILES), tenant_id)
    queue = False

    def ask(state: _State) -> _State | None:
        nonlocal queue
        now = datetime.now(UTC)
        asked = dataclasses.replace(state, requested=state.requested + int(changed))
        queue = asked.owed and not state.held(now) and state.queued_at < now - _QUEUED_WINDOW
        if queue:
            return dataclasses.replace(asked, queued_at=now)
        return asked if changed else None

    state = await row.change(ask)
    if queue:
        await send_job(Job(tenant_id, "profiles"), storage)
    return RebuildState(state.requested, state.built, state.current)


async def run_rebuild_job(
    tenant_id: str,
    storage: Storage | None = None,
    *,
    budget_seconds: float,
    lease_seconds: int = LEASE_SECONDS,
    member_page: int = MEMBER_PAGE,
) -> JobStatus:
    """The queue invocation's part: take the lease and build, flip and retire until the table
    is up to date (`done`) or `budget_seconds` are spent (`continued`: checkpointed, lease
    released, continuation queued). `busy`: another invocation holds the lease; `idle`:
    nothing was owed. `member_page`: rows per member query page (small in tests)."""
    storage = storage or get_storage()
    table = await storage.table(RESOLVED_PROFILES)
    row = _StateRow(table, tenant_id)
    owner = uuid.uuid4().hex
    now = datetime.now(UTC)

    def take(state: _State) -> _State | None:
        if (state.held(now) and state.lease_owner != owner) or not state.owed:
            return None
        until = now + timedelta(seconds=lease_seconds)
        return dataclasses.replace(state, lease_owner=owner, lease_until=until, queued_at=EPOCH)

    state = await row.change(take)
    if state.lease_owner != owner:
        return "busy" if state.owed else "idle"
    job = _Job(storage, table, row, owner, state, budget_seconds, lease_seconds, member_page)
    try:
        return await job.run()
    except LeaseLost:
        _log.warning("resolved profiles: lease lost to another invocation", extra=job.ids())
        return "busy"
    except Exception:
        await job.release(queue_next=False)
        raise


class LeaseLost(Exception):
    """The rebuild ran past its lease and another invocation took it over."""


@dataclass(frozen=True, slots=True)
class _State:
    """The state row. `retired`: partitions to delete once `flipped_at` is old enough."""

    requested: int = 0
    built: int = 0
    lease_owner: str = ""
    lease_until: datetime = EPOCH
    queued_at: datetime = EPOCH
    current: str = ""
    flipped_at: datetime = EPOCH
    retired: tuple[str, ...] = ()
    # The generation being built and its checkpoint.
    building: str = ""
    target: int = 0
    profile: str = ""
    priority: int = 0
    head: int = 0
    tail: int = 0
    after: str = ""

    @property
    def owed(self) -> bool:
        return bool(self.building or self.retired or self.requested > self.built)

    def held(self, now: datetime) -> bool:
        return bool(self.lease_owner) and self.lease_until > now


_COLUMNS: Final = {
    "requested": "requested",
    "built": "built",
    "leaseOwner": "lease_owner",
    "leaseUntil": "lease_until",
    "queuedAt": "queued_at",
    "current": "current",
    "flippedAt": "flipped_at",
    "retired": "retired",
    "building": "building",
    "target": "target",
    "profile": "profile",
    "priority": "priority",
    "head": "head",
    "tail": "tail",
    "after": "after",
}


def _from_row(row: TableEntity | None) -> _State:
    if row is None:
        return _State()
    values: dict[str, Any] = {}
    for column, name in _COLUMNS.items():
        value = row.get(column)
        default = getattr(_State(), name)
        if name == "retired":
            values[name] = tuple(json.loads(value)) if value else ()
        elif isinstance(default, datetime):
            values[name] = value if isinstance(value, datetime) else EPOCH
        elif isinstance(default, int):
            values[name] = int(value or 0)
        else:
            values[name] = str(value or "")
    return _State(**values)


def _to_row(state: _State) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for column, name in _COLUMNS.items():
        value = getattr(state, name)
        row[column] = json.dumps(list(value)) if name == "retired" else value
    return row


class _StateRow:
    """Reads and ETag-conditionally replaces one tenant's state row."""

    def __init__(self, table: TableClient, tenant_id: str) -> None:
        self._table = table
        self._tenant_id = tenant_id

    async def read(self) -> tuple[_State, TableEntity | None]:
        try:
            async with translate_errors():
                row = await self._table.get_entity(STATE_PARTITION, self._tenant_id)
        except ResourceNotFoundError:
            return _State(), None
        return _from_row(row), row

    async def _write(self, row: TableEntity | None, state: _State) -> bool:
        """False when another writer got in first (re-read and try again)."""
        entity = {"PartitionKey": STATE_PARTITION, "RowKey": self._tenant_id} | _to_row(state)
        etag = None if row is None else row.metadata["etag"]
        return await write_if_unchanged(self._table, entity, etag) is not None

    async def change(self, change: Callable[[_State], _State | None]) -> _State:
        """Apply `change` to the state row (re-read on a conflict); the state afterwards."""
        for _ in range(STATE_WRITE_ATTEMPTS):
            current, row = await self.read()
            changed = change(current)
            if changed is None:
                return current
            if await self._write(row, changed):
                return changed
        raise TimeoutError("the resolved-profiles state row stayed busy")


def _rank(row: dict[str, Any]) -> tuple[int, str, int]:
    """Lower keeps the member: the profile's rank, then how early its walk reached the group."""
    return (int(row["priority"]), str(row["profile"]), int(row["seq"]))


class _Job:
    """One invocation of the rebuild job, holding the lease."""

    def __init__(
        self,
        storage: Storage,
        table: TableClient,
        row: _StateRow,
        owner: str,
        state: _State,
        budget_seconds: float,
        lease_seconds: int,
        member_page: int,
    ) -> None:
        self._storage = storage
        self._member_page = member_page
        self._table = table
        self._row = row
        self._owner = owner
        self.state = state
        self._tenant_id = row._tenant_id
        self._deadline = time.monotonic() + budget_seconds
        self._lease_seconds = lease_seconds
        # Renewals well inside the lease: a slow page cannot let it expire under the holder.
        self._checkpoint_every = min(CHECKPOINT_SECONDS, lease_seconds / 3)
        self._last_checkpoint = time.monotonic()
        self._slots = asyncio.Semaphore(TRANSACTIONS_IN_FLIGHT)
        self._writes: set[asyncio.Task[None]] = set()
        self.claimed = 0
        self._moved = False

    def _out_of_time(self) -> bool:
        """Spent, once this invocation has moved (a page, a flip, a transaction of deletes):
        however small the budget, every invocation gets the job further."""
        return self._moved and time.monotonic() >= self._deadline

    async def run(self) -> JobStatus:
        while True:
            state = self.state
            if self._out_of_time():
                return await self._hand_over()
            if state.building:
                if not await self._build():
                    return await self._hand_over()
                await self._flip()
            elif state.retired and self._retire_due(state) <= 0:
                if not await self._retire():
                    return await self._hand_over()
            elif state.requested > state.built:
                await self._start()
            else:
                await self.release(queue_next=True)
                return "done"

    @staticmethod
    def _retire_due(state: _State) -> int:
        """Seconds until retired partitions may be deleted."""
        due = state.flipped_at + timedelta(seconds=RETIRE_AFTER_SECONDS)
        return max(0, int((due - datetime.now(UTC)).total_seconds()) + 1)

    async def _hand_over(self) -> JobStatus:
        await self.release(queue_next=True)
        _log.info("resolved profiles continue in a new invocation", extra=self.ids())
        return "continued"

    async def release(self, *, queue_next: bool) -> None:
        """Free the lease; with `queue_next`, queue the job again if anything is still owed
        (decided in the releasing write, so a request that came meanwhile is not lost)."""
        await self._settle(raise_errors=queue_next)
        queue, delay = False, 0
        now = datetime.now(UTC)

        def free(state: _State) -> _State | None:
            nonlocal queue, delay
            if state.lease_owner != self._owner:
                return None
            queue = queue_next and state.owed
            only_retiring = not state.building and state.requested <= state.built
            delay = self._retire_due(state) if queue and only_retiring else 0
            # A delayed message does not count as queued: a request meanwhile queues its own.
            queued_at = now if queue and not delay else EPOCH
            return dataclasses.replace(state, lease_owner="", lease_until=now, queued_at=queued_at)

        self.state = await self._row.change(free)
        if queue:
            await send_job(Job(self._tenant_id, "profiles"), self._storage, delay_seconds=delay)

    async def _as_holder(self, **changes: Any) -> None:
        """Write the holder's own columns (and a renewed lease) into the current row: requests
        bump `requested` meanwhile, and that is kept."""
        until = datetime.now(UTC) + timedelta(seconds=self._lease_seconds)

        def apply(state: _State) -> _State:
            if state.lease_owner != self._owner:
                raise LeaseLost("another invocation took the resolved-profiles lease")
            return dataclasses.replace(state, lease_until=until, **changes)

        self.state = await self._row.change(apply)
        self._last_checkpoint = time.monotonic()

    async def _start(self) -> None:
        generation = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + uuid.uuid4().hex[:8]
        await self._as_holder(
            building=generation,
            target=self.state.requested,
            profile="",
            priority=0,
            head=0,
            tail=0,
            after="",
        )
        _log.info("resolved profiles: building a generation", extra=self.ids())

    async def _flip(self) -> None:
        state = self.state
        retired = (
            *state.retired,
            _partition(self._tenant_id, state.current),
            _work_partition(self._tenant_id, state.building),
        )
        await self._as_holder(
            current=state.building,
            built=max(state.built, state.target),
            flipped_at=datetime.now(UTC),
            retired=tuple(dict.fromkeys(retired)),
            building="",
            target=0,
            profile="",
            priority=0,
            head=0,
            tail=0,
            after="",
        )
        _pointers.pop((self._table.url, self._tenant_id), None)
        self._moved = True
        _log.info("resolved profiles: generation current", extra=self.ids())

    def ids(self) -> dict[str, Any]:
        return {"tenantId": self._tenant_id, "generation": self.state.building or None}

    # -- building ----------------------------------------------------------------------------
    async def _build(self) -> bool:
        """Walk every profile from the checkpoint; True when the generation is complete."""
        store = ProfileStore(await self._storage.table(INSTALL_PROFILES), self._tenant_id)
        profiles = await store.all()  # tens, best first
        self._members = await self._storage.table(AAD_GROUP_MEMBERS)
        self._claims = _partition(self._tenant_id, self.state.building)
        self._work = _work_partition(self._tenant_id, self.state.building)
        head, tail, after = self.state.head, self.state.tail, self.state.after
        profile = next((p for p in profiles if p.name == self.state.profile), None)
        while True:
            if self._out_of_time():
                await self._checkpoint(profile, head, tail, after)
                return False
            if profile is None or head >= tail:  # this profile's walk is done: the next one
                done = (self.state.priority, self.state.profile) if self.state.profile else None
                profile = next((p for p in profiles if done is None or p.rank > done), None)
                if profile is None:
                    await self._settle()
                    return True
                head = tail
                tail = await self._visit(profile, profile.group_id, [profile.group_id], tail)
                after = ""
                await self._checkpoint(profile, head, tail, after)
                continue
            group_id, path = await self._queued(head)
            finished, tail, after = await self._expand(profile, head, group_id, path, tail, after)
            if finished:
                head, after = head + 1, ""
            if not finished or self._checkpoint_due():
                await self._checkpoint(profile, head, tail, after)
            if not finished:
                return False

    def _checkpoint_due(self) -> bool:
        return time.monotonic() - self._last_checkpoint >= self._checkpoint_every

    async def _checkpoint(self, profile: Profile | None, head: int, tail: int, after: str) -> None:
        await self._settle()  # every claim before this point is written
        if profile is None:  # deleted meanwhile: its walk ends where it is
            await self._as_holder(head=tail, tail=tail, after="")
            return
        await self._as_holder(
            profile=profile.name, priority=profile.priority, head=head, tail=tail, after=after
        )

    async def _expand(
        self, profile: Profile, seq: int, group_id: str, path: list[str], tail: int, after: str
    ) -> tuple[bool, int, str]:
        """Claim the group's users and devices and queue its groups, page by page from the
        member RowKey `after`: (group finished, tail, after) when done or out of time."""
        query = "PartitionKey eq @group and isDeleted eq false"
        parameters = {"group": group_id}
        if after:
            query += " and RowKey gt @after"
            parameters["after"] = after
        overrides = profile.overrides.serialize()
        encoded_path = json.dumps(path, separators=(",", ":"))
        async with translate_errors():
            # An AsyncPageIterator: its continuation_token is None after the last page.
            pages = cast(
                AsyncPageIterator[TableEntity],
                self._members.query_entities(
                    query,
                    parameters=parameters,
                    select=["RowKey", "memberType"],
                    results_per_page=self._member_page,
                ).by_page(),
            )
            async for page in pages:
                claims: list[dict[str, Any]] = []
                async for row in page:
                    member_id, member_type = row["RowKey"], row.get("memberType")
                    if member_type == "group":
                        tail = await self._visit(profile, member_id, [*path, member_id], tail)
                    elif member_type in ("user", "device"):
                        claims.append(
                            {
                                "PartitionKey": self._claims,
                                "RowKey": member_id,
                                "memberType": member_type,
                                "profile": profile.name,
                                "priority": profile.priority,
                                "groupId": profile.group_id,
                                "path": encoded_path,
                                "overrides": overrides,
                                "seq": seq,
                            }
                        )
                    after = member_id
                self._moved = True
                for start in range(0, len(claims), TRANSACTION_LIMIT):
                    await self._claim(claims[start : start + TRANSACTION_LIMIT])
                if self._out_of_time():  # finished if this was the group's last page
                    return pages.continuation_token is None, tail, after
        return True, tail, after

    async def _visit(self, profile: Profile, group_id: str, path: list[str], tail: int) -> int:
        """Queue `group_id` for the profile's walk at seq `tail` unless the walk reached it
        already; the new tail."""
        visited = {
            "PartitionKey": self._work,
            "RowKey": f"v|{profile.name}|{group_id}",
            "seq": tail,
        }
        queued = {
            "PartitionKey": self._work,
            "RowKey": f"q|{tail:010d}",
            "groupId": group_id,
            "path": json.dumps(path, separators=(",", ":")),
        }
        try:
            async with translate_errors():
                await self._table.submit_transaction([("create", visited), ("upsert", queued)])
            return tail + 1
        except TableTransactionError as error:
            if error.status_code != 409:
                raise
        if await self._visited_seq(profile, group_id) != tail:
            return tail  # reached earlier: a cycle or a second path
        # This walk's own visit, written by an invocation that died before its checkpoint.
        async with translate_errors():
            await self._table.upsert_entity(queued, mode=UpdateMode.REPLACE)
        return tail + 1

    async def _visited_seq(self, profile: Profile, group_id: str) -> int:
        async with translate_errors():
            row = await self._table.get_entity(self._work, f"v|{profile.name}|{group_id}")
        return int(row["seq"])

    async def _queued(self, seq: int) -> tuple[str, list[str]]:
        async with translate_errors():
            row = await self._table.get_entity(self._work, f"q|{seq:010d}")
        return str(row["groupId"]), list(json.loads(row["path"]))

    async def _claim(self, rows: list[dict[str, Any]]) -> None:
        """Insert `rows` in the background, at most TRANSACTIONS_IN_FLIGHT at once."""
        await self._slots.acquire()
        task = asyncio.create_task(self._insert(rows))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        task.add_done_callback(lambda _: self._slots.release())

    async def _settle(self, *, raise_errors: bool = True) -> None:
        """Wait for every write in flight; raise the first failure (unless giving up)."""
        if self._writes:
            await asyncio.gather(*list(self._writes), return_exceptions=not raise_errors)

    async def _insert(self, rows: list[dict[str, Any]]) -> None:
        while rows:
            try:
                async with translate_errors():
                    await self._table.submit_transaction([("create", row) for row in rows])
                self.claimed += len(rows)
                return
            except TableTransactionError as error:
                if error.status_code != 409:
                    raise
                # The rows before the failing one had no conflict; the index is 0 when the
                # service does not say, which costs a transaction, not correctness.
                index = min(max(error.index, 0), len(rows) - 1)
            if index:
                await self._insert(rows[:index])
            await self._keep_better(rows[index])
            rows = rows[index + 1 :]

    async def _keep_better(self, row: dict[str, Any]) -> None:
        """Insert `row`, or replace the member's row if `row` ranks better; else leave it."""
        for _ in range(STATE_WRITE_ATTEMPTS):
            try:
                async with translate_errors():
                    await self._table.create_entity(row)
                self.claimed += 1
                return
            except ResourceExistsError:
                pass
            try:
                async with translate_errors():
                    there = await self._table.get_entity(row["PartitionKey"], row["RowKey"])
            except ResourceNotFoundError:
                continue
            if _rank(there) <= _rank(row):
                return
            try:
                async with translate_errors():
                    await self._table.update_entity(
                        row,
                        mode=UpdateMode.REPLACE,
                        etag=there.metadata["etag"],
                        match_condition=MatchConditions.IfNotModified,
                    )
                return
            except (ResourceModifiedError, ResourceNotFoundError):
                continue
        raise TimeoutError("a resolved-profiles member row stayed busy")

    # -- retiring ----------------------------------------------------------------------------
    async def _retire(self) -> bool:
        """Delete the retired partitions, 100 rows a transaction; False when out of time (the
        partitions left are still listed: the next invocation goes on)."""
        for partition in self.state.retired:
            rows = self._table.query_entities(
                "PartitionKey eq @partition",
                parameters={"partition": partition},
                select=["RowKey"],
                results_per_page=self._member_page,
            )
            batch: list[tuple[str, dict[str, Any]]] = []
            async with translate_errors():
                async for row in rows:
                    batch.append(("delete", {"PartitionKey": partition, "RowKey": row["RowKey"]}))
                    if len(batch) == TRANSACTION_LIMIT:
                        await self._delete(batch)
                        batch = []
                        self._moved = True
                        if self._out_of_time():
                            return False
            if batch:
                await self._delete(batch)
            await self._settle()
            left = tuple(p for p in self.state.retired if p != partition)
            await self._as_holder(retired=left)
        return True

    async def _delete(self, batch: list[tuple[str, dict[str, Any]]]) -> None:
        await self._slots.acquire()

        async def submit() -> None:
            async with translate_errors():
                await self._table.submit_transaction(batch)

        task = asyncio.create_task(submit())
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)
        task.add_done_callback(lambda _: self._slots.release())
