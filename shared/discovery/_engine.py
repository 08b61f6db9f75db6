"""One discovery invocation: take the lease, advance the run page by page, checkpoint, stop.

A run is a sequence of phases saved in `DiscoveryState`:
- full: `latest` (a delta link valid from now) -> `list` (`/users?$top=999` pages) -> `sweep`
  (users this run did not stamp become deleted) -> commit the delta link. The delta link is taken
  before the enumeration, so the next delta replays any change made while it ran.
  The other full strategy, `initial` (`/users/delta` from scratch), makes ~5x more requests.
- delta: `delta` (follow the stored link) -> commit the new delta link.
Pages are fetched one ahead of the table writes. After each page is written the next link,
the counters and a renewed lease are saved with one ETag-conditioned write. When the time budget
is spent the lease is released and a continuation message is queued; a failure beyond Graph's
retries also keeps the checkpoint, so any later trigger resumes the same run.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from azure.identity.aio import DefaultAzureCredential

from shared.discovery._graph import DeltaLinkExpired, GraphError, GraphPage, GraphUsers
from shared.discovery._messages import Continuation, send_continuation
from shared.discovery._runs import RunLog, new_run_id
from shared.discovery._state import LeaseLost, Mode, Phase, RunProgress, StateStore, TenantState
from shared.discovery._users import UserWriter
from shared.names import AAD_USERS, DISCOVERY_RUNS, DISCOVERY_STATE
from shared.settings import Settings
from shared.storage import Storage, get_storage

FullStrategy = Literal["latest-then-list", "delta-from-scratch"]
Outcome = Literal["succeeded", "failed", "skipped", "continued", "ignored"]
PREFETCH_PAGES: Final = 2
FULL_PAGES_IN_FLIGHT: Final = 2
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class DiscoveryConfig:
    tenant_id: str
    graph_base_url: str
    time_budget_seconds: float
    lease_seconds: int
    full_strategy: FullStrategy = "latest-then-list"

    @classmethod
    def from_settings(cls, settings: Settings) -> DiscoveryConfig:
        return cls(
            tenant_id=settings.tenant_id,
            graph_base_url=settings.graph_base_url,
            time_budget_seconds=settings.discovery_time_budget_seconds,
            lease_seconds=settings.discovery_lease_seconds,
        )


@dataclass(frozen=True, slots=True)
class RunResult:
    status: Outcome
    run_id: str | None
    mode: Mode
    error: str | None = None


async def run_discovery(
    mode: Mode,
    trigger: str,
    config: DiscoveryConfig,
    *,
    resume_run_id: str | None = None,
    storage: Storage | None = None,
) -> RunResult:
    """Start a run of `mode`, or resume the tenant's unfinished run; coalesce with a live one.

    `resume_run_id` (a continuation message) resumes only that run: if it already finished or
    was resumed by someone else, the message is stale and nothing happens.
    """
    storage = storage or get_storage()
    states = StateStore(await storage.table(DISCOVERY_STATE), config.tenant_id)
    runs = RunLog(await storage.table(DISCOVERY_RUNS), config.tenant_id)
    owner = uuid.uuid4().hex
    now = datetime.now(UTC)
    state = await states.read()
    log_ids = {"tenantId": config.tenant_id}
    if state.lease_held_by_other(owner, now):
        holder = state.run.run_id if state.run else "unknown"
        run_id = await runs.record_skipped(mode, trigger, f"run {holder} holds the lease")
        _log.info("discovery skipped: a run holds the lease", extra=log_ids | {"runId": run_id})
        return RunResult("skipped", run_id, mode)
    if resume_run_id is not None and (state.run is None or state.run.run_id != resume_run_id):
        _log.info("stale continuation ignored", extra=log_ids | {"runId": resume_run_id})
        return RunResult("ignored", resume_run_id, mode)
    if state.run is None:
        state.run = _new_run(mode, trigger, state, now, config.full_strategy)
    else:
        state.run.invocations += 1
        _log.info(
            "resuming unfinished discovery run",
            extra=log_ids | {"runId": state.run.run_id, "trigger": trigger},
        )
    try:
        state = await states.write(states.leased(state, owner, config.lease_seconds, now))
    except LeaseLost:
        run_id = await runs.record_skipped(mode, trigger, "another invocation took the lease")
        return RunResult("skipped", run_id, mode)
    assert state.run is not None
    await runs.record(state.run, "running")
    async with _graph(config.graph_base_url) as graph:
        invocation = _Invocation(config, storage, states, runs, graph, owner, state)
        return await invocation.execute()


def _new_run(
    mode: Mode, trigger: str, state: TenantState, now: datetime, strategy: FullStrategy
) -> RunProgress:
    run = RunProgress(new_run_id(now), mode, trigger, "delta", state.delta_link, now)
    run.expected_users = state.last_full_users
    if mode == "delta" and not state.delta_link:
        run.mode = "full"
        run.fallback_reason = "no delta link yet: the first run is a full run"
    if run.mode == "full":
        run.phase, run.next_link = _first_full_phase(strategy), None
    return run


def _first_full_phase(strategy: FullStrategy) -> Phase:
    return "latest" if strategy == "latest-then-list" else "initial"


@contextlib.asynccontextmanager
async def _graph(base_url: str) -> AsyncIterator[GraphUsers]:
    # DefaultAzureCredential: managed identity in Azure (IDENTITY_ENDPOINT / IDENTITY_HEADER).
    credential = DefaultAzureCredential()
    graph = GraphUsers(base_url, credential)
    try:
        yield graph
    finally:
        await graph.close()
        await credential.close()


class _Invocation:
    def __init__(
        self,
        config: DiscoveryConfig,
        storage: Storage,
        states: StateStore,
        runs: RunLog,
        graph: GraphUsers,
        owner: str,
        state: TenantState,
    ) -> None:
        self.config = config
        self.storage = storage
        self.states = states
        self.runs = runs
        self.graph = graph
        self.owner = owner
        self.state = state
        self.deadline = time.monotonic() + config.time_budget_seconds
        assert state.run is not None
        self.run: RunProgress = state.run
        self.log_ids = {"tenantId": config.tenant_id, "runId": self.run.run_id}

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
        users_table = await self.storage.table(AAD_USERS)
        while True:
            writer = UserWriter(users_table, self.config.tenant_id, self.run.stamp)
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

    async def _take_latest_delta_link(self) -> None:
        url = self.run.next_link or self.graph.delta_url(latest=True)
        while True:
            page = await self.graph.page(url)
            if page.delta_link:
                break
            if not page.next_link:
                raise GraphError("Graph's delta answer had neither a next nor a delta link")
            url = page.next_link
        self.run.pending_delta_link = page.delta_link
        self.run.phase, self.run.next_link = "list", self.graph.list_url()
        await self._checkpoint()

    async def _stream(self, phase: Phase, writer: UserWriter) -> bool:
        """Write pages from the checkpointed link until the phase ends (True) or time is up.

        Fetching runs ahead of writing; in a full enumeration (each user once) the next page's
        transactions start while the previous page finishes and is checkpointed. Delta pages
        are written one after another: a later page may change the same user again.
        """
        start = self.run.next_link or self.graph.delta_url()
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
    async def _write(writer: UserWriter, phase: Phase, page: GraphPage) -> tuple[int, int]:
        if phase == "delta":
            return await writer.write_delta(page.users)
        return await writer.write_complete(page.users), 0

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
        self.run.phase = _first_full_phase(self.config.full_strategy)
        await self._checkpoint()

    def _out_of_time(self) -> bool:
        return time.monotonic() >= self.deadline

    async def _checkpoint(self) -> None:
        now = datetime.now(UTC)
        self.state.run = self.run
        leased = self.states.leased(self.state, self.owner, self.config.lease_seconds, now)
        # The run row only mirrors the state row, so both writes can go together.
        self.state, _ = await asyncio.gather(
            self.states.write(leased), self.runs.record(self.run, "running")
        )

    async def _finish(self) -> None:
        now = datetime.now(UTC)
        self.state.delta_link = self.run.pending_delta_link or self.state.delta_link
        if self.run.mode == "full":
            self.state.last_full_at = now
            self.state.last_full_users = self.run.upserts
        else:
            self.state.last_delta_at = now
        self.state.run = None
        self.state = await self.states.write(self.states.released(self.state))
        await self.runs.record(self.run, "succeeded", finished=True)
        _log.info(
            "discovery run succeeded",
            extra=self.log_ids
            | {"pages": self.run.pages, "upserts": self.run.upserts, "deletes": self.run.deletes},
        )

    async def _hand_over(self) -> None:
        """Time budget spent: release the lease first, then queue the continuation."""
        self.state = await self.states.write(self.states.released(self.state))
        await self.runs.record(self.run, "continued")
        message = Continuation(self.config.tenant_id, self.run.mode, self.run.run_id)
        await send_continuation(message, self.storage)
        _log.info("discovery continues in a new invocation", extra=self.log_ids)

    async def _fail(self, error: str) -> None:
        """Keep the checkpoint, free the lease: the next trigger of any kind resumes."""
        _log.warning("discovery run failed: %s", error, extra=self.log_ids)
        with contextlib.suppress(LeaseLost):
            self.state = await self.states.write(self.states.released(self.state))
        await self.runs.record(self.run, "failed", error=error)

    def _result(self, status: Outcome, error: str | None = None) -> RunResult:
        return RunResult(status, self.run.run_id, self.run.mode, error)
