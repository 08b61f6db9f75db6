"""One discovery invocation: take the lease, advance the run page by page, checkpoint, stop.

Each resource (`users`, `groups`) has its own `DiscoveryState` row, lease and runs.
A run is a sequence of phases saved in `DiscoveryState`:
- users, full: `latest` (a delta link valid from now) -> `list` (`/users?$top=999` pages) ->
  `sweep` (users this run did not stamp become deleted) -> commit the delta link. The delta link
  is taken before the enumeration, so the next delta replays any change made while it ran.
  `/users/delta` from scratch would make ~5x more requests (README "Discovery").
- groups, full: `initial` (`/groups/delta` with members from scratch: Graph has no other way to
  list every group with its members in one stream) -> `sweep` -> commit the delta link.
- delta: `delta` (follow the stored link) -> commit the new delta link.
Pages are fetched one ahead of the table writes. After each page is written the next link,
the counters and a renewed lease are saved with one ETag-conditioned write. When the time budget
is spent the lease is released and a continuation message is queued; a failure beyond Graph's
retries also keeps the checkpoint, so any later trigger resumes the same run.

A request that finds a run in progress joins the pending requests in the state row (see
`_state`): it neither starts nor records a run. When a run finishes with requests pending, one
`pending` message starts the run that serves them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final, Literal

from shared.discovery._graph import (
    LIST_PAGE_SIZE,
    DeltaLinkExpired,
    DiscoveryGraph,
    GraphError,
    GraphPage,
    graph_client,
)
from shared.discovery._groups import GroupWriter
from shared.discovery._messages import PENDING, Continuation, send_continuation
from shared.discovery._runs import RunLog, new_run_id
from shared.discovery._state import (
    LeaseLost,
    Mode,
    Phase,
    Resource,
    RunProgress,
    StateStore,
    TenantState,
)
from shared.discovery._users import UserWriter
from shared.names import AAD_GROUP_MEMBERS, AAD_GROUPS, AAD_USERS, DISCOVERY_RUNS, DISCOVERY_STATE
from shared.profiles import rebuild_resolved
from shared.settings import GroupScope, Settings
from shared.storage import Storage, get_storage

# How one invocation of a discovery run ended.
RunStatus = Literal["succeeded", "failed", "coalesced", "continued", "ignored"]
PREFETCH_PAGES: Final = 2
FULL_PAGES_IN_FLIGHT: Final = 2
# Starting competes with every request of a burst for one row: retry a conflict with jitter.
START_ATTEMPTS: Final = 50
START_BACKOFF_SECONDS: Final = 0.005
START_BACKOFF_MAX_SECONDS: Final = 0.25
_log = logging.getLogger(__name__)


class DiscoveryBusy(LeaseLost):
    """A request could not get its write into the state row in `START_ATTEMPTS` tries."""


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    tenant_id: str
    graph_base_url: str
    time_budget_seconds: float
    lease_seconds: int
    group_scope: GroupScope = "none"
    # How long the run for pending requests waits, so that the rest of a burst joins it.
    coalesce_seconds: int = 0
    # Users per /users page of a full run (Graph honours $top up to 999, the fewest requests).
    list_page_size: int = LIST_PAGE_SIZE

    @classmethod
    def from_settings(cls, settings: Settings) -> DiscoveryConfig:
        return cls(
            tenant_id=settings.tenant_id,
            graph_base_url=settings.graph_base_url,
            time_budget_seconds=settings.discovery_time_budget_seconds,
            lease_seconds=settings.discovery_lease_seconds,
            group_scope=settings.discovery_groups,
            coalesce_seconds=settings.discovery_coalesce_seconds,
        )

    @property
    def resources(self) -> tuple[Resource, ...]:
        """The resources discovered: users always, groups unless DISCOVERY_GROUPS is none."""
        return ("users",) if self.group_scope == "none" else ("users", "groups")


@dataclass(frozen=True, slots=True)
class RunResult:
    status: RunStatus
    run_id: str | None
    mode: Mode
    error: str | None = None


async def run_discovery(
    mode: Mode,
    trigger: str,
    config: DiscoveryConfig,
    *,
    resource: Resource = "users",
    resume_run_id: str | None = None,
    storage: Storage | None = None,
) -> RunResult:
    """Start a run of `mode`, or resume the resource's unfinished run; coalesce with a live one.

    `resume_run_id` (a continuation message) resumes only that run: if it already finished or
    another invocation is advancing it, the message is stale and nothing happens. The trigger
    `pending` starts the run that serves the pending requests, if any are left.
    """
    if resource not in config.resources:
        return RunResult("ignored", None, mode, f"{resource} are not discovered")
    storage = storage or get_storage()
    states = StateStore(await storage.table(DISCOVERY_STATE), config.tenant_id, resource)
    runs = RunLog(await storage.table(DISCOVERY_RUNS), config.tenant_id, resource)
    owner = uuid.uuid4().hex
    log_ids = {"tenantId": config.tenant_id, "resource": resource}
    for attempt in range(START_ATTEMPTS):
        state = await states.read()
        try:
            start = _start(state, mode, trigger, resume_run_id, owner, config)
            if isinstance(start, RunResult):
                if start.status == "coalesced":
                    await states.write(state)
                    _log.info("discovery request joined the pending run", extra=log_ids)
                return start
            state = await states.write(states.leased(state, owner, config.lease_seconds, start))
            break
        except LeaseLost:
            await asyncio.sleep(_jitter(attempt))
    else:
        raise DiscoveryBusy(f"the {resource} discovery state stayed busy; try again")
    assert state.run is not None
    await runs.record(state.run, "running")
    async with graph_client(config.graph_base_url) as graph:
        invocation = _Invocation(config, resource, storage, states, runs, graph, owner, state)
        return await invocation.execute()


def _jitter(attempt: int) -> float:
    """Exponential backoff with full jitter (20 ms doubling, at most 1 s): each conflict means
    another request got its write in, so contenders spread out instead of colliding again."""
    ceiling = min(START_BACKOFF_MAX_SECONDS, START_BACKOFF_SECONDS * 2.0**attempt)
    return ceiling * secrets.randbelow(1000) / 1000


def _start(
    state: TenantState,
    mode: Mode,
    trigger: str,
    resume_run_id: str | None,
    owner: str,
    config: DiscoveryConfig,
) -> datetime | RunResult:
    """Decide what this request does with the state row just read, changing `state` for the
    write that follows: the time to lease it from (a run to advance), or a result."""
    now = datetime.now(UTC)
    run = state.run
    if resume_run_id is not None:
        if run is None or run.run_id != resume_run_id or state.lease_held_by_other(owner, now):
            return RunResult("ignored", resume_run_id, mode, "stale continuation")
        run.invocations += 1
        return now
    if state.lease_held_by_other(owner, now):
        if trigger == PENDING:  # the live run queues another when it ends
            return RunResult("ignored", None, mode, "a run is in progress")
        state.add_pending(mode, trigger)
        return RunResult("coalesced", run.run_id if run else None, mode)
    if run is not None:
        # An unfinished run (failed, or between invocations) goes first; this request may
        # ask about changes it has passed, so it waits for the next run.
        run.invocations += 1
        if trigger != PENDING:
            state.add_pending(mode, trigger)
        return now
    window = timedelta(seconds=config.lease_seconds + config.coalesce_seconds)
    if trigger != PENDING and state.pending_run_queued(now, window):
        state.add_pending(mode, trigger)
        return RunResult("coalesced", None, mode)
    waiting, waiting_mode, waiting_trigger = state.take_pending()
    if trigger == PENDING:
        if not waiting or waiting_mode is None:
            return RunResult("ignored", None, mode, "no request is pending")
        mode, trigger, requests = waiting_mode, waiting_trigger or trigger, waiting
    else:
        requests = waiting + 1
        mode = "full" if waiting_mode == "full" else mode
    state.run = _new_run(mode, trigger, state, now, _full_phase(state.resource))
    state.run.requests = requests
    return now


def _new_run(
    mode: Mode, trigger: str, state: TenantState, now: datetime, full_phase: Phase
) -> RunProgress:
    run = RunProgress(new_run_id(now), mode, trigger, "delta", state.delta_link, now)
    run.expected_users = state.last_full_users
    if mode == "delta" and not state.delta_link:
        run.mode = "full"
        run.fallback_reason = "no delta link yet: the first run is a full run"
    if run.mode == "full":
        run.phase, run.next_link = full_phase, None
    return run


def _full_phase(resource: Resource) -> Phase:
    return "initial" if resource == "groups" else "latest"


class _Invocation:
    def __init__(
        self,
        config: DiscoveryConfig,
        resource: Resource,
        storage: Storage,
        states: StateStore,
        runs: RunLog,
        graph: DiscoveryGraph,
        owner: str,
        state: TenantState,
    ) -> None:
        self.config = config
        self.resource: Resource = resource
        self.storage = storage
        self.states = states
        self.runs = runs
        self.graph = graph
        self.owner = owner
        self.state = state
        self.deadline = time.monotonic() + config.time_budget_seconds
        assert state.run is not None
        self.run: RunProgress = state.run
        self.log_ids = {
            "tenantId": config.tenant_id,
            "resource": resource,
            "runId": self.run.run_id,
        }

    async def execute(self) -> RunResult:
        try:
            finished = await self._advance()
            if finished:
                await self._finish()
                return self._result("succeeded")
            await self._hand_over()
            return self._result("continued")
        except LeaseLost:
            _log.warning("discovery lost its lease to another invocation", extra=self.log_ids)
            return self._result("failed", "lease lost to another invocation")
        except (GraphError, DeltaLinkExpired) as error:
            await self._fail(str(error))
            return self._result("failed", str(error))

    async def _advance(self) -> bool:
        """Run phases until the run is complete (True) or the budget is spent (False)."""
        while True:
            writer = await self._writer()
            phase = self.run.phase
            if phase == "latest":
                await self._take_latest_delta_link()
            elif phase == "sweep":
                self.run.deletes += await writer.mark_unseen_deleted()
                return True
            else:
                try:
                    done = await self._stream(phase, writer)
                except DeltaLinkExpired as error:
                    if phase != "delta":
                        raise
                    await self._fall_back_to_full(str(error))
                    continue
                if not done:
                    return False
                if phase == "delta":
                    return True
            if self._out_of_time():
                return False

    async def _writer(self) -> UserWriter | GroupWriter:
        tenant, stamp = self.config.tenant_id, self.run.stamp
        if self.resource == "users":
            return UserWriter(await self.storage.table(AAD_USERS), tenant, stamp)
        return GroupWriter(
            await self.storage.table(AAD_GROUPS),
            await self.storage.table(AAD_GROUP_MEMBERS),
            tenant,
            stamp,
            security_only=self.config.group_scope == "all",
        )

    def _first_url(self) -> str:
        """Where a phase without a checkpointed link starts."""
        if self.resource == "groups":
            scope = self.config.group_scope
            return self.graph.groups_delta_url(scope if isinstance(scope, tuple) else ())
        return self.graph.users_delta_url()

    async def _take_latest_delta_link(self) -> None:
        url = self.run.next_link or self.graph.users_delta_url(latest=True)
        while True:
            page = await self.graph.page(url)
            if page.delta_link:
                break
            if not page.next_link:
                raise GraphError("Graph's delta answer had neither a next nor a delta link")
            url = page.next_link
        self.run.pending_delta_link = page.delta_link
        self.run.phase, self.run.next_link = (
            "list",
            self.graph.users_list_url(self.config.list_page_size),
        )
        await self._checkpoint()

    async def _stream(self, phase: Phase, writer: UserWriter | GroupWriter) -> bool:
        """Write pages from the checkpointed link until the phase ends (True) or time is up.

        Fetching runs ahead of writing; in a full enumeration (each user once) the next page's
        transactions start while the previous page finishes and is checkpointed. Delta pages
        are written one after another: a later page may change the same user again.
        """
        start = self.run.next_link or self._first_url()
        pages: asyncio.Queue[GraphPage | BaseException] = asyncio.Queue(PREFETCH_PAGES)
        producer = asyncio.create_task(self._fetch_pages(start, pages))
        in_flight = 1 if phase == "delta" else FULL_PAGES_IN_FLIGHT
        writing: deque[tuple[GraphPage, asyncio.Task[tuple[int, int]]]] = deque()
        try:
            while True:
                page = await pages.get()
                if isinstance(page, BaseException):
                    while writing:
                        await self._settle(phase, *writing.popleft())
                    raise page
                writing.append((page, asyncio.create_task(self._write(writer, phase, page))))
                last = page.next_link is None
                while writing and (len(writing) >= in_flight or last):
                    if await self._settle(phase, *writing.popleft()):
                        return True
                if self._out_of_time():
                    while writing:
                        await self._settle(phase, *writing.popleft())
                    return False
        finally:
            producer.cancel()
            for _, task in writing:
                task.cancel()
            await asyncio.gather(producer, *(task for _, task in writing), return_exceptions=True)

    @staticmethod
    async def _write(
        writer: UserWriter | GroupWriter, phase: Phase, page: GraphPage
    ) -> tuple[int, int]:
        if phase == "delta":
            return await writer.write_delta(page.items)
        return await writer.write_complete(page.items)

    async def _settle(
        self, phase: Phase, page: GraphPage, write: asyncio.Task[tuple[int, int]]
    ) -> bool:
        """Wait for a page's writes, count them and checkpoint; True if the phase ended."""
        upserts, deletes = await write
        self.run.pages += 1
        self.run.upserts += upserts
        self.run.deletes += deletes
        ended = self._after_page(phase, page)
        await self._checkpoint()
        return ended

    async def _fetch_pages(
        self, url: str | None, pages: asyncio.Queue[GraphPage | BaseException]
    ) -> None:
        try:
            while url:
                page = await self.graph.page(url)
                await pages.put(page)
                url = page.next_link
        except Exception as error:  # handed to the writer, which raises it in order
            await pages.put(error)

    def _after_page(self, phase: Phase, page: GraphPage) -> bool:
        """Move the checkpoint past `page`; True when it was the phase's last page."""
        if page.next_link:
            self.run.next_link = page.next_link
            return False
        if phase in ("delta", "initial"):
            if not page.delta_link:
                raise GraphError("Graph's last delta page had no delta link")
            self.run.pending_delta_link = page.delta_link
        self.run.next_link = None
        if phase != "delta":
            self.run.phase = "sweep"
        return True

    async def _fall_back_to_full(self, reason: str) -> None:
        _log.warning("delta link expired; falling back to a full run", extra=self.log_ids)
        self.run.mode = "full"
        self.run.fallback_reason = f"{reason}: delta link expired, fell back to a full run"
        self.run.next_link = None
        self.run.pending_delta_link = None
        self.run.sweep_stamp = f"{self.run.run_id}-full"
        self.run.phase = _full_phase(self.resource)
        await self._checkpoint()

    def _out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    async def _checkpoint(self) -> None:
        now = datetime.now(UTC)
        self.state.run = self.run
        leased = self.states.leased(self.state, self.owner, self.config.lease_seconds, now)
        # The run row only mirrors the state row, so both writes can go together.
        self.state, _ = await asyncio.gather(
            self._save(leased), self.runs.record(self.run, "running")
        )

    async def _save(self, state: TenantState) -> TenantState:
        return await self.states.write_as_holder(state, self.owner, self.run.run_id)

    async def _finish(self) -> None:
        now = datetime.now(UTC)
        self.state.delta_link = self.run.pending_delta_link or self.state.delta_link
        if self.run.mode == "full":
            self.state.last_full_at = now
            self.state.last_full_users = self.run.upserts
        else:
            self.state.last_delta_at = now
        self.state.run = None
        self.state.pending_queued_at = now  # read only if requests are pending
        self.state = await self._save(self.states.released(self.state))
        if self.resource == "groups":
            # Before the run shows as succeeded: the rebuild it asks for is already queued.
            await self._rebuild_profiles()
        await self.runs.record(self.run, "succeeded", finished=True)
        if self.state.pending_requests:
            # One message whatever the count: the run it starts serves every pending request,
            # and those that arrive before it becomes visible.
            kick = Continuation(
                self.config.tenant_id, "delta", trigger=PENDING, resource=self.resource
            )
            await send_continuation(kick, self.storage, delay_seconds=self.config.coalesce_seconds)
        _log.info(
            "discovery run succeeded",
            extra=self.log_ids
            | {"pages": self.run.pages, "upserts": self.run.upserts, "deletes": self.run.deletes},
        )

    async def _rebuild_profiles(self) -> None:
        """Memberships changed: ask for the install profiles' rebuild (a queued job; the run
        does not wait for it). A failure here is logged; the next run or profile change asks
        again; the run stays good."""
        # A delta that changed nothing (most 5-minute timer runs) only re-queues a rebuild
        # still owed whose job died: one point read.
        changed = bool(self.run.upserts or self.run.deletes)
        try:
            await rebuild_resolved(self.config.tenant_id, self.storage, changed=changed)
        except Exception:
            _log.warning("resolved install profiles not rebuilt", exc_info=True, extra=self.log_ids)

    async def _hand_over(self) -> None:
        """Time budget spent: release the lease first, then queue the continuation."""
        self.state = await self._save(self.states.released(self.state))
        await self.runs.record(self.run, "continued")
        message = Continuation(
            self.config.tenant_id, self.run.mode, self.run.run_id, resource=self.resource
        )
        await send_continuation(message, self.storage)
        _log.info("discovery continues in a new invocation", extra=self.log_ids)

    async def _fail(self, error: str) -> None:
        """Keep the checkpoint, free the lease: the next trigger of any kind resumes."""
        _log.warning("discovery run failed: %s", error, extra=self.log_ids)
        with contextlib.suppress(LeaseLost):
            self.state = await self._save(self.states.released(self.state))
        await self.runs.record(self.run, "failed", error=error)

    def _result(self, status: RunStatus, error: str | None = None) -> RunResult:
        return RunResult(status, self.run.run_id, self.run.mode, error)
