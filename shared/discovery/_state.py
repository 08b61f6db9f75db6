"""The tenant's `DiscoveryState` row (RowKey `users`): delta link, lease and checkpoint.

Every write is a whole-row replace conditioned on the ETag last read, so two invocations can
never both believe they hold the lease, and a checkpoint can only be written by the lease
holder. The in-progress run's counters live in the same row as its checkpoint: a page is
counted exactly when its next link is saved, so a resumed run never counts a page twice.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from azure.core import MatchConditions
from azure.core.exceptions import ResourceExistsError, ResourceModifiedError, ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.errors import BootstrapError
from shared.storage import translate_errors

ROW_KEY: Final = "users"

Mode = Literal["full", "delta"]
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
    delta_link: str | None = None
    last_full_at: datetime | None = None
    last_delta_at: datetime | None = None
    last_full_users: int | None = None
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None
    run: RunProgress | None = None
    etag: str | None = field(default=None, repr=False)

    def lease_held_by_other(self, owner: str, now: datetime) -> bool:
        return bool(
            self.lease_owner
            and self.lease_owner != owner
            and self.lease_expires_at is not None
            and self.lease_expires_at > now
        )


class StateStore:
    """Reads and conditionally writes one tenant's state row."""

    def __init__(self, table: TableClient, tenant_id: str) -> None:
        self._table = table
        self._tenant_id = tenant_id

    async def read(self) -> TenantState:
        try:
            async with translate_errors():
                row = await self._table.get_entity(self._tenant_id, ROW_KEY)
        except ResourceNotFoundError:
            return TenantState(self._tenant_id)
        return _from_row(self._tenant_id, row)

    async def write(self, state: TenantState) -> TenantState:
        """Replace the row if nobody changed it since `state` was read; else `LeaseLost`."""
        entity = _to_row(state)
        try:
            async with translate_errors():
                if state.etag is None:
                    meta = await self._table.create_entity(entity)
                else:
                    meta = await self._table.update_entity(
                        entity,
                        mode=UpdateMode.REPLACE,
                        etag=state.etag,
                        match_condition=MatchConditions.IfNotModified,
                    )
        except (ResourceExistsError, ResourceModifiedError) as error:
            raise LeaseLost("the discovery state changed under this invocation") from error
        return dataclasses.replace(state, etag=str(meta["etag"]))

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
    "runFallbackReason": "fallback_reason",
    "runSweepStamp": "sweep_stamp",
    "runExpectedUsers": "expected_users",
}


def _to_row(state: TenantState) -> dict[str, Any]:
    row: dict[str, Any] = {
        "PartitionKey": state.tenant_id,
        "RowKey": ROW_KEY,
        "deltaLink": state.delta_link,
        "lastFullAt": state.last_full_at,
        "lastDeltaAt": state.last_delta_at,
        "lastFullUsers": state.last_full_users,
        "leaseOwner": state.lease_owner,
        "leaseExpiresAt": state.lease_expires_at,
    }
    if state.run is not None:
        row |= {column: getattr(state.run, name) for column, name in _RUN_FIELDS.items()}
    return {key: value for key, value in row.items() if value is not None}


def _from_row(tenant_id: str, row: dict[str, Any]) -> TenantState:
    run = None
    if row.get("runId"):
        values: dict[str, Any] = {name: row.get(column) for column, name in _RUN_FIELDS.items()}
        for name in ("pages", "upserts", "deletes", "invocations"):
            values[name] = int(values[name] or 0)
        values["started_at"] = _aware(values["started_at"]) or datetime.now(UTC)
        run = RunProgress(**values)
    return TenantState(
        tenant_id=tenant_id,
        delta_link=row.get("deltaLink"),
        last_full_at=_aware(row.get("lastFullAt")),
        last_delta_at=_aware(row.get("lastDeltaAt")),
        last_full_users=row.get("lastFullUsers"),
        lease_owner=row.get("leaseOwner"),
        lease_expires_at=_aware(row.get("leaseExpiresAt")),
        run=run,
        etag=str(row.metadata["etag"]) if hasattr(row, "metadata") else None,
    )


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)
