"""The fleet overview (`GET /api/devices?summary=overview`): a snapshot that a summarization pass
keeps, and a request reads with one point read. ConfigMgr's console works the same way: its
summaries are periodic summarization tasks, each shown with its "last updated" time.

Why a snapshot and not counters: a device's diagnosis depends on its report, on time (stuck past
`DEVICE_STUCK_MINUTES`) and on `AadUsers` (the 0x87D00231 cross-check), so no counter the
recorder keeps can stay exact. Counting means reading the tenant's whole `DeviceStatus` partition
(933 ms at 2,400 devices on the 2-core development machine, growing with the fleet; Azure serves
at most 1,000 entities a page), and a request never scans a table. So a pass reads the partition
page by page in the background and publishes what it counted; a request answers the last
publication with its `asOf` time.

The row: table `DeviceOverview`, PartitionKey tenant id, RowKey `overview`. One row, so a request
is one point read, and every write below is one whole-row replace conditioned on the ETag read
(create-if-absent the first time): two writers can never both succeed from the same read.

Published (what a request answers):
- `overview`: JSON `{"counts": {stage: n}, "diagnoses": {code: n}, "installs": {day: n}}`, the
  installs for the `INSTALL_CHART_DAYS` (30) UTC days up to `asOf`. About 1.5 KB whatever the
  fleet (a string property may hold 64 KiB).
- `asOf`: when the pass that produced it started. Every device it counted was read after that
  time, and every diagnosis was judged at that time: one clock for the whole pass, so a device
  does not turn "stuck" half-way through one and the counts add up to the total.
The pass in progress (absent between passes):
- `passStartedAt` (the coming `asOf`), `passNext` (the `DeviceStatus` query's continuation token,
  JSON; absent before the first page), `passTally` (the counts so far, as `overview`),
  `passPages`, `passInvocations`. A page's devices are added to `passTally` in the same write
  that saves the token after the page, so a pass resumed from its checkpoint counts each device
  exactly once: a page is counted exactly when its successor's token is saved.
- `leaseOwner`, `leaseUntil`: the invocation advancing the pass. Taken with the checkpoint that
  starts or resumes it and renewed by every checkpoint, for `LEASE_SECONDS` (30 s: a page of
  1,000 rows is read, explained and checkpointed in about 0.5 s here, so one slow page does not
  lose it). An invocation that dies keeps its checkpoint; the first one after `leaseUntil` (the
  next pass a stale request asks for) resumes it. A lease holder whose write fails on the ETag
  has lost the row to another invocation and stops without writing. A checkpoint older than
  `RESTART_AFTER` (10 minutes) is not resumed but started afresh: `asOf` is the pass's start, so
  its snapshot would be stale the moment it was published.
- `requestedAt`: when a pass was last asked for, by a request that found the snapshot stale or
  by a pass that spent its time budget and queued its continuation. While it is under
  `REQUEST_SECONDS` old, no request queues another message; the ETag-conditioned write of
  `requestedAt` is what makes a burst of requests on many instances queue one message (the
  writers that lose the race queue nothing). Taking the lease clears it.

Freshness: a snapshot younger than `FRESH_SECONDS` (60 s) is answered as it is; an older one is
answered too, with `refreshing: true`, while the pass it asked for runs. 60 s because a device
reports at each stage and an admin acts on minutes (the stuck threshold defaults to 120 minutes),
while a pass over 100,000 devices costs ~100 page reads: at most that per minute per tenant, and
only while someone looks.

Where the pass runs: the `discovery-continue` queue (`{"tenant", "job": "overview"}`), so no
function is added. An invocation stops taking pages after `PASS_BUDGET_SECONDS` (60 s, far below
the 10-minute `functionTimeout` and the queue's 30 s visibility renewal), releases the lease and
queues its continuation; `request_pass`, given by the caller, queues that message.

Memory: one page of rows (1,000 at most, the overview's nine columns) and that page's `AadUsers`
lookups (the explainer is rebuilt per page); the tally is stages + codes + 30 days.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.errors import BootstrapError
from shared.names import AAD_USERS, DEVICE_OVERVIEW, DEVICE_STATUS
from shared.reports._diagnosis import CATALOGUE
from shared.reports._schema import STAGES
from shared.reports._views import _aware, _Explainer
from shared.storage import Storage, get_storage, translate_errors, write_if_unchanged
from shared.times import format_utc

ROW_KEY: Final = "overview"
INSTALL_CHART_DAYS: Final = 30
FRESH_SECONDS: Final = 60
# How long a queued pass message may take to start before a request queues another: the queue is
# polled at least every 2 s (host.json maxPollingInterval) and a busy instance takes a batch of
# 16 messages at a time; past this the sender probably died between its write and its send.
REQUEST_SECONDS: Final = 30
LEASE_SECONDS: Final = 30
PASS_BUDGET_SECONDS: Final = 60
# A checkpoint older than this is a dead pass's: its numbers would be published already stale
# (asOf is its start), so it is started afresh. A live one moves on every minute at least
# (PASS_BUDGET_SECONDS), and at ~5,000 devices/s a pass over 100,000 devices takes ~20 s.
RESTART_AFTER: Final = timedelta(minutes=10)
# Azure Table storage answers at most 1,000 entities a page.
PAGE_SIZE: Final = 1000
OVERVIEW_COLUMNS: Final = [
    "PartitionKey",
    "RowKey",
    "stage",
    "lastReportAt",
    "reportedAt",
    "ccmsetupExitCode",
    "installErrorCode",
    "userObjectId",
    "dsregcmdFacts",
]

Clock = Callable[[], datetime]
# Queues `{"tenant", "job": "overview"}` on `discovery-continue` (the caller knows the queue).
RequestPass = Callable[[], Awaitable[None]]
PassStatus = Literal["published", "continued", "busy"]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class OverviewLeaseLost(BootstrapError):
    """The overview row changed since it was read: another writer got there first."""


@dataclass(slots=True)
class Tally:
    """Devices counted by stage, by diagnosis, and installs by UTC day (ISO date)."""

    stages: Counter[str] = field(default_factory=Counter)
    diagnoses: Counter[str] = field(default_factory=Counter)
    installs: Counter[str] = field(default_factory=Counter)

    def add(self, stage: str, diagnosis: str, installed_on: date | None) -> None:
        self.stages[stage] += 1
        self.diagnoses[diagnosis] += 1
        if installed_on is not None:
            self.installs[installed_on.isoformat()] += 1

    def to_json(self) -> str:
        return json.dumps(
            {"counts": self.stages, "diagnoses": self.diagnoses, "installs": self.installs},
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: object) -> Tally:
        if not isinstance(text, str):
            return cls()
        value = json.loads(text)
        return cls(
            Counter(value.get("counts", {})),
            Counter(value.get("diagnoses", {})),
            Counter(value.get("installs", {})),
        )

    def view(self, last_day: date) -> dict[str, Any]:
        """The answer's counts: every stage and code listed, the 30 days up to `last_day`."""
        days = [last_day - timedelta(days=n) for n in range(INSTALL_CHART_DAYS - 1, -1, -1)]
        return {
            "counts": {stage: self.stages.get(stage, 0) for stage in STAGES},
            "diagnoses": {code: self.diagnoses.get(code, 0) for code in CATALOGUE},
            "installsByDay": [
                {"day": d.isoformat(), "count": self.installs.get(d.isoformat(), 0)} for d in days
            ],
            "total": sum(self.stages.values()),
        }


@dataclass(slots=True)
class OverviewState:
    """The tenant's `DeviceOverview` row (see the module docstring for each field)."""

    tenant_id: str
    as_of: datetime | None = None
    published: Tally | None = None
    pass_started_at: datetime | None = None
    pass_next: dict[str, str] | None = None
    pass_tally: Tally = field(default_factory=Tally)
    pass_pages: int = 0
    pass_invocations: int = 0
    lease_owner: str | None = None
    lease_until: datetime | None = None
    requested_at: datetime | None = None
    etag: str | None = field(default=None, repr=False)

    def leased(self, now: datetime) -> bool:
        return self.lease_until is not None and self.lease_until > now

    def fresh(self, now: datetime) -> bool:
        return self.as_of is not None and now - self.as_of < timedelta(seconds=FRESH_SECONDS)

    def requested(self, now: datetime) -> bool:
        return self.requested_at is not None and now - self.requested_at < timedelta(
            seconds=REQUEST_SECONDS
        )


class _Store:
    """Reads and ETag-conditionally replaces one tenant's overview row."""

    def __init__(self, table: TableClient, tenant_id: str) -> None:
        self._table = table
        self._tenant_id = tenant_id

    async def read(self) -> OverviewState:
        try:
            async with translate_errors():
                row = await self._table.get_entity(self._tenant_id, ROW_KEY)
        except ResourceNotFoundError:
            return OverviewState(self._tenant_id)
        return _from_row(self._tenant_id, row)

    async def write(self, state: OverviewState) -> OverviewState:
        """Replace the row if nobody wrote it since `state` was read; else `OverviewLeaseLost`."""
        etag = await write_if_unchanged(self._table, _to_row(state), state.etag)
        if etag is None:
            raise OverviewLeaseLost("the overview row changed under this writer")
        return dataclasses.replace(state, etag=etag)


def _to_row(state: OverviewState) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": state.tenant_id,
        "RowKey": ROW_KEY,
        "asOf": state.as_of,
        "overview": state.published.to_json() if state.published else None,
        "leaseOwner": state.lease_owner,
        "leaseUntil": state.lease_until,
        "requestedAt": state.requested_at,
    }
    if state.pass_started_at is not None:
        row |= {
            "passStartedAt": state.pass_started_at,
            "passNext": json.dumps(state.pass_next) if state.pass_next else None,
            "passTally": state.pass_tally.to_json(),
            "passPages": state.pass_pages,
            "passInvocations": state.pass_invocations,
        }
    return {key: value for key, value in row.items() if value is not None}


def _from_row(tenant_id: str, row: Mapping[str, Any]) -> OverviewState:
    next_token = row.get("passNext")
    return OverviewState(
        tenant_id=tenant_id,
        as_of=_aware(row.get("asOf")),
        published=Tally.from_json(row["overview"]) if row.get("overview") else None,
        pass_started_at=_aware(row.get("passStartedAt")),
        pass_next=json.loads(next_token) if isinstance(next_token, str) else None,
        pass_tally=Tally.from_json(row.get("passTally")),
        pass_pages=int(row.get("passPages") or 0),
        pass_invocations=int(row.get("passInvocations") or 0),
        lease_owner=row.get("leaseOwner"),
        lease_until=_aware(row.get("leaseUntil")),
        requested_at=_aware(row.get("requestedAt")),
        etag=str(row.metadata["etag"]) if hasattr(row, "metadata") else None,
    )


async def _store(storage: Storage, tenant_id: str) -> _Store:
    return _Store(await storage.table(DEVICE_OVERVIEW), tenant_id)


async def fleet_overview(
    tenant_id: str,
    *,
    request_pass: RequestPass,
    storage: Storage | None = None,
    clock: Clock = _utc_now,
) -> dict[str, Any]:
    """The last published overview with `asOf` (None before the first pass) and `refreshing`.

    One point read. A snapshot older than `FRESH_SECONDS` (or none) with no pass running or
    asked for asks for one: `requestedAt` is written on the ETag read, and only the writer that
    wins queues the message (`request_pass`)."""
    store = await _store(storage or get_storage(), tenant_id)
    state = await store.read()
    now = clock()
    refreshing = state.leased(now) or state.requested(now)
    if not refreshing and not state.fresh(now):
        try:
            await store.write(dataclasses.replace(state, requested_at=now))
        except OverviewLeaseLost:
            pass  # another request (which queues the message) or a pass wrote first
        else:
            await request_pass()
        refreshing = True
    tally = state.published or Tally()
    return {
        **tally.view((state.as_of or now).date()),
        "asOf": format_utc(state.as_of) if state.as_of else None,
        "refreshing": refreshing,
    }


@dataclass(frozen=True, slots=True)
class PassResult:
    """How one invocation of the pass ended and how many devices it counted."""

    status: PassStatus
    devices: int = 0
    pages: int = 0


async def run_overview_pass(
    tenant_id: str,
    *,
    request_pass: RequestPass,
    stuck_after: timedelta,
    budget_seconds: float = PASS_BUDGET_SECONDS,
    page_size: int = PAGE_SIZE,
    storage: Storage | None = None,
    clock: Clock = _utc_now,
) -> PassResult:
    """Start the tenant's pass, or resume the unfinished one; `busy` if another holds the lease.

    `stuck_after` is DEVICE_STUCK_MINUTES (the explainer's stuck rule). Takes pages until the
    last one (then publishes) or until `budget_seconds` are spent (at least one page per
    invocation, so every invocation makes progress; then releases the lease and queues its
    continuation through `request_pass`)."""
    storage = storage or get_storage()
    store = await _store(storage, tenant_id)
    owner = uuid.uuid4().hex
    state = await store.read()
    now = clock()
    if state.leased(now):
        return PassResult("busy")
    if state.pass_started_at is None or now - state.pass_started_at > RESTART_AFTER:
        state = dataclasses.replace(
            state, pass_started_at=now, pass_next=None, pass_tally=Tally(), pass_pages=0
        )
    state.pass_invocations += 1
    state.requested_at = None
    state.lease_owner, state.lease_until = owner, now + timedelta(seconds=LEASE_SECONDS)
    try:
        state = await store.write(state)
        pass_ = _Pass(storage, store, request_pass, stuck_after, clock)
        return await pass_.advance(state, budget_seconds, page_size)
    except OverviewLeaseLost:
        return PassResult("busy")


class _Pass:
    """One invocation of the pass, holding the lease."""

    def __init__(
        self,
        storage: Storage,
        store: _Store,
        request_pass: RequestPass,
        stuck_after: timedelta,
        clock: Clock,
    ) -> None:
        self._storage = storage
        self._store = store
        self._request_pass = request_pass
        self._stuck_after = stuck_after
        self._clock = clock

    async def advance(self, state: OverviewState, budget_seconds: float, size: int) -> PassResult:
        assert state.pass_started_at is not None
        deadline = time.monotonic() + budget_seconds
        devices = await self._storage.table(DEVICE_STATUS)
        users = await self._storage.table(AAD_USERS)
        first_day = state.pass_started_at.date() - timedelta(days=INSTALL_CHART_DAYS - 1)
        counted = pages = 0
        while True:
            rows, state.pass_next = await _page(devices, state.tenant_id, state.pass_next, size)
            # Rebuilt per page: its user cache stays one page's; its clock is the pass's.
            explainer = _Explainer(
                state.tenant_id, users, now=state.pass_started_at, stuck_after=self._stuck_after
            )
            for row in rows:
                await _count(devices, explainer, row, state.pass_tally, first_day)
            state.pass_pages += 1
            counted, pages = counted + len(rows), pages + 1
            if state.pass_next is None:
                await self._store.write(_published(state))
                return PassResult("published", counted, pages)
            if time.monotonic() >= deadline:
                state.lease_owner = state.lease_until = None
                state.requested_at = self._clock()
                await self._store.write(state)
                await self._request_pass()
                return PassResult("continued", counted, pages)
            state.lease_until = self._clock() + timedelta(seconds=LEASE_SECONDS)
            state = await self._store.write(state)


def _published(state: OverviewState) -> OverviewState:
    """The pass's tally becomes the snapshot, as of the pass's start; the pass and lease end."""
    return OverviewState(
        state.tenant_id,
        as_of=state.pass_started_at,
        published=state.pass_tally,
        requested_at=state.requested_at,
        etag=state.etag,
    )


async def _page(
    table: TableClient, tenant_id: str, token: dict[str, str] | None, size: int
) -> tuple[list[dict[str, Any]], dict[str, str] | None]:
    """One page of the tenant's devices (the overview's columns) and the token after it."""
    async with translate_errors():
        pages = table.query_entities(
            "PartitionKey eq @tenant",
            parameters={"tenant": tenant_id},
            select=OVERVIEW_COLUMNS,
            results_per_page=size,
        ).by_page(continuation_token=token)  # type: ignore[arg-type]
        rows: list[dict[str, Any]] = []
        async for page in pages:
            rows = [row async for row in page]
            break
        return rows, pages.continuation_token or None  # type: ignore[attr-defined]


async def _count(
    table: TableClient,
    explainer: _Explainer,
    row: Mapping[str, Any],
    tally: Tally,
    first_day: date,
) -> None:
    """Add one device; its install counts by day only from `first_day` (the chart's days)."""
    state = row
    if row.get("dsregcmdFacts") is None:
        state = await _with_raw_dsregcmd(table, row)
    diagnosis = (await explainer.explain(state))["code"]
    reported = _aware(state.get("reportedAt"))
    installed_on = reported.date() if reported and state.get("stage") == "installed" else None
    in_chart = installed_on is not None and installed_on >= first_day
    tally.add(str(state.get("stage")), diagnosis, installed_on if in_chart else None)


async def _with_raw_dsregcmd(table: TableClient, row: Mapping[str, Any]) -> Mapping[str, Any]:
    """A row recorded before `dsregcmdFacts` existed: one point read of its raw dsregcmd."""
    device = await table.get_entity(row["PartitionKey"], row["RowKey"], select=["dsregcmd"])
    return {**row, "dsregcmd": device.get("dsregcmd")}
