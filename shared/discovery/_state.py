"""A tenant's `DiscoveryState` rows (RowKey the resource: `users`, `groups`): delta link, lease,
checkpoint and the requests waiting for the next run.

Every write is a whole-row replace conditioned on the ETag last read, so two invocations can
never both believe they hold the lease, and a checkpoint can only be written by the lease
holder. The in-progress run's counters live in the same row as its checkpoint: a page is
counted exactly when its next link is saved, so a resumed run never counts a page twice.

Coalescing: a request (timer, event) that finds a run in progress does not start or record a
run; it adds itself to `pendingRequests` (and raises `pendingMode` to `full` if it asks for
one) with the same ETag-conditioned write, retried on a conflict. The run that finishes leaves
the pending requests in the row and queues one message; the next run to start, whoever starts
it, takes every pending request into itself (`requests` on its run row) in the write that
takes the lease. While that message is on its way (`pendingQueuedAt`, one lease period), a new
request joins the pending ones rather than starting a run of its own. So a burst of any size
is one running run and at most one pending run per resource, and runs of one resource never
overlap: a run starts only when the lease is free. A lease holder's own writes carry over a
pending count that changed under them (`write_as_holder`) instead of losing the lease.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.errors import BootstrapError
from shared.storage import translate_errors, write_if_unchanged

Mode = Literal["full", "delta"]
Resource = Literal["users", "groups"]
RESOURCES: Final[tuple[Resource, ...]] = ("users", "groups")
# Each retry follows another request's pending write, so this bounds only a pathological burst.
HOLDER_WRITE_ATTEMPTS: Final = 100
# latest: take a delta link for "now"; list: /users pages; initial: /users/delta from scratch;
# sweep: mark unseen users deleted; delta: follow the stored delta link.
Phase = Literal["latest", "list", "initial", "sweep", "delta"]


class LeaseLost(BootstrapError):
    """Another invocation changed the state row: this one no longer holds the lease."""


@dataclass(slots=True)
class RunProgress:
    """A run in progress, as checkpointed."""

    run_id: str
    mode: Mode
    trigger: str
    phase: Phase
    next_link: str | None
    started_at: datetime
    pending_delta_link: str | None = None
    pages: int = 0
    upserts: int = 0
    deletes: int = 0
    invocations: int = 1
    requests: int = 1  # the triggers this run serves: its own and those it absorbed
    fallback_reason: str | None = None
    # Stamped on every row written; the sweep marks live rows without it deleted. A fallback
    # to full gets a new one, so rows written by the abandoned delta do not count as seen.
    sweep_stamp: str | None = None
    # Users the previous full run wrote: the progress estimate of a full run (None: unknown).
    expected_users: int | None = None

    @property
    def stamp(self) -> str:
        return self.sweep_stamp or self.run_id


@dataclass(slots=True)
class TenantState:
    tenant_id: str
    resource: Resource = "users"
    delta_link: str | None = None
    last_full_at: datetime | None = None
    last_delta_at: datetime | None = None
    last_full_users: int | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    run: RunProgress | None = None
    pending_requests: int = 0
    pending_mode: Mode | None = None
    pending_trigger: str | None = None
    # When the last run queued the message that starts the pending run.
    pending_queued_at: datetime | None = None
    etag: str | None = field(default=None, repr=False)

    def lease_held_by_other(self, owner: str, now: datetime) -> bool:
        return bool(
            self.lease_owner
            and self.lease_owner != owner
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )

    def add_pending(self, mode: Mode, trigger: str) -> None:
        """Count one more request for the run after the current one (`full` outranks delta)."""
        self.pending_requests += 1
        self.pending_mode = "full" if "full" in (mode, self.pending_mode) else "delta"
        self.pending_trigger = self.pending_trigger or trigger

    def take_pending(self) -> tuple[int, Mode | None, str | None]:
        """The pending requests, now served by the run that starts; clears them."""
        taken = (self.pending_requests, self.pending_mode, self.pending_trigger)
        self.pending_requests, self.pending_mode, self.pending_trigger = 0, None, None
        self.pending_queued_at = None
        return taken

    def pending_run_queued(self, now: datetime, within: timedelta) -> bool:
        """Requests are pending and a message to start their run was queued within `within`
        (past that, its sender may have died before sending: the next request starts it)."""
        queued = self.pending_queued_at
        return bool(self.pending_requests and queued and now < queued + within)


class StateStore:
    """Reads and conditionally writes one tenant's state row."""

    def __init__(self, table: TableClient, tenant_id: str, resource: Resource = "users") -> None:
        self._table = table
        self._tenant_id = tenant_id
        self._resource: Resource = resource

    async def read(self) -> TenantState:
        try:
            async with translate_errors():
                row = await self._table.get_entity(self._tenant_id, self._resource)
        except ResourceNotFoundError:
            return TenantState(self._tenant_id, self._resource)
        return _from_row(self._tenant_id, self._resource, row)

    async def write(self, state: TenantState) -> TenantState:
        """Replace the row if nobody changed it since `state` was read; else `LeaseLost`."""
        etag = await write_if_unchanged(self._table, _to_row(state), state.etag)
        if etag is None:
            raise LeaseLost("the discovery state changed under this invocation")
        return dataclasses.replace(state, etag=etag)

    async def write_as_holder(self, state: TenantState, owner: str, run_id: str) -> TenantState:
        """`write` for the lease holder: if the row changed only because requests joined the
        pending count (the lease and run are still `owner`'s), keep their count and write
        again; anything else is `LeaseLost`. Bounded: each retry follows a new pending write."""
        for _ in range(HOLDER_WRITE_ATTEMPTS):
            try:
                return await self.write(state)
            except LeaseLost:
                fresh = await self.read()
                if fresh.lease_owner != owner or fresh.run is None or fresh.run.run_id != run_id:
                    raise
                state = dataclasses.replace(
                    state,
                    pending_requests=fresh.pending_requests,
                    pending_mode=fresh.pending_mode,
                    pending_trigger=fresh.pending_trigger,
                    pending_queued_at=state.pending_queued_at or fresh.pending_queued_at,
                    etag=fresh.etag,
                )
        raise LeaseLost("the discovery state kept changing under the lease holder")

    @staticmethod
    def leased(state: TenantState, owner: str, seconds: int, now: datetime) -> TenantState:
        return dataclasses.replace(
            state, lease_owner=owner, lease_expires_at=now + timedelta(seconds=seconds)
        )

    @staticmethod
    def released(state: TenantState) -> TenantState:
        return dataclasses.replace(state, lease_owner=None, lease_expires_at=None)


_RUN_FIELDS: Final = {
    "runId": "run_id",
    "runMode": "mode",
    "runTrigger": "trigger",
    "runPhase": "phase",
    "runNextLink": "next_link",
    "runStartedAt": "started_at",
    "runPendingDeltaLink": "pending_delta_link",
    "runPages": "pages",
    "runUpserts": "upserts",
    "runDeletes": "deletes",
    "runInvocations": "invocations",
    "runRequests": "requests",
    "runFallbackReason": "fallback_reason",
    "runSweepStamp": "sweep_stamp",
    "runExpectedUsers": "expected_users",
}


def _to_row(state: TenantState) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": state.tenant_id,
        "RowKey": state.resource,
        "deltaLink": state.delta_link,
        "lastFullAt": state.last_full_at,
        "lastDeltaAt": state.last_delta_at,
        "lastFullUsers": state.last_full_users,
        "leaseOwner": state.lease_owner,
        "leaseExpiresAt": state.lease_expires_at,
        "pendingMode": state.pending_mode,
        "pendingTrigger": state.pending_trigger,
        "pendingQueuedAt": state.pending_queued_at,
    }
    if state.pending_requests:
        row["pendingRequests"] = state.pending_requests
    if state.run is not None:
        row |= {column: getattr(state.run, name) for column, name in _RUN_FIELDS.items()}
    return {key: value for key, value in row.items() if value is not None}


def _from_row(tenant_id: str, resource: Resource, row: dict[str, Any]) -> TenantState:
    run = None
    if row.get("runId"):
        values: dict[str, Any] = {name: row.get(column) for column, name in _RUN_FIELDS.items()}
        for name in ("pages", "upserts", "deletes", "invocations", "requests"):
            values[name] = int(values[name] or 0)
        values["requests"] = values["requests"] or 1
        values["started_at"] = _aware(values["started_at"]) or datetime.now(UTC)
        run = RunProgress(**values)
    return TenantState(
        tenant_id=tenant_id,
        resource=resource,
        delta_link=row.get("deltaLink"),
        last_full_at=_aware(row.get("lastFullAt")),
        last_delta_at=_aware(row.get("lastDeltaAt")),
        last_full_users=row.get("lastFullUsers"),
        lease_owner=row.get("leaseOwner"),
        lease_expires_at=_aware(row.get("leaseExpiresAt")),
        run=run,
        pending_requests=int(row.get("pendingRequests") or 0),
        pending_mode=row.get("pendingMode"),
        pending_trigger=row.get("pendingTrigger"),
        pending_queued_at=_aware(row.get("pendingQueuedAt")),
        etag=str(row.metadata["etag"]) if hasattr(row, "metadata") else None,
    )


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
