"""Run history in `DiscoveryRuns` (PartitionKey tenant, RowKey inverted-time run id).

A run id sorts newest first, so the table's natural order is the admin view's order and paging
continues after the last RowKey returned.
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.discovery._state import Resource, RunProgress
from shared.ids import inverted_ticks
from shared.storage import partition_page, translate_errors
from shared.times import format_utc

Status = Literal["running", "succeeded", "failed", "continued"]
RUN_ID_PATTERN: Final = re.compile(r"[0-9]{19}-[0-9a-f]{6}")
RUN_COLUMNS: Final = (
    "resource",
    "mode",
    "trigger",
    "status",
    "pages",
    "upserts",
    "deletes",
    "startedAt",
    "finishedAt",
    "durationSeconds",
    "invocations",
    "requests",
    "error",
    "fallbackReason",
)
# Below this many seconds of running a rate is noise: no time estimate yet.
MIN_SECONDS_FOR_ESTIMATE: Final = 5.0


def new_run_id(now: datetime) -> str:
    """Inverted time (newest sorts first) and a random suffix against collisions."""
    return f"{inverted_ticks(now)}-{secrets.token_hex(3)}"


@dataclass(frozen=True, slots=True)
class RunsPage:
    runs: list[dict[str, Any]]
    continuation: str | None


class RunLog:
    """Run rows of one tenant; `resource` is what this log's runs discover."""

    def __init__(self, table: TableClient, tenant_id: str, resource: Resource = "users") -> None:
        self._table = table
        self._tenant_id = tenant_id
        self._resource = resource

    async def record(
        self,
        progress: RunProgress,
        status: Status,
        *,
        error: str | None = None,
        finished: bool = False,
    ) -> None:
        """Write the run's row from its checkpointed progress (merge: `error` survives)."""
        now = datetime.now(UTC)
        row: dict[str, Any] = {
            "PartitionKey": self._tenant_id,
            "RowKey": progress.run_id,
            "resource": self._resource,
            "mode": progress.mode,
            "trigger": progress.trigger,
            "status": status,
            "pages": progress.pages,
            "upserts": progress.upserts,
            "deletes": progress.deletes,
            "invocations": progress.invocations,
            "requests": progress.requests,
            "startedAt": progress.started_at,
            "durationSeconds": round((now - progress.started_at).total_seconds(), 3),
        }
        row["progress"] = json.dumps(_progress(progress, status, now), separators=(",", ":"))
        if progress.fallback_reason:
            row["fallbackReason"] = progress.fallback_reason
        if error is not None:
            row["error"] = error
        if finished:
            row["finishedAt"] = now
        async with translate_errors():
            await self._table.upsert_entity(row, mode=UpdateMode.MERGE)

    async def page(self, size: int, after: str | None) -> RunsPage:
        """Up to `size` runs, newest first, after the run id `after`."""
        rows, next_run = await partition_page(self._table, self._tenant_id, size=size, after=after)
        return RunsPage([_public(row) for row in rows], next_run)


def _progress(progress: RunProgress, status: Status, now: datetime) -> dict[str, Any]:
    """Pages and users so far and, for a full run, the share done and the time left, estimated
    from the previous full run's user count and this run's rate (written with each checkpoint)."""
    users = progress.upserts + progress.deletes
    seconds = (now - progress.started_at).total_seconds()
    expected = progress.expected_users if progress.mode == "full" else None
    view: dict[str, Any] = {
        "pages": progress.pages,
        "users": users,
        "expectedUsers": expected,
        "percent": None,
        "secondsLeft": None,
        "usersPerSecond": round(users / seconds, 1) if seconds > 0 else None,
    }
    if status == "succeeded":
        view |= {"percent": 100, "secondsLeft": 0}
    elif expected:
        view["percent"] = min(99, int(100 * users / expected))
        if users and seconds >= MIN_SECONDS_FOR_ESTIMATE:
            view["secondsLeft"] = max(0, round((expected - users) * seconds / users))
    return view


def _public(row: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"runId": row["RowKey"]}
    for column in RUN_COLUMNS:
        value = row.get(column)
        view[column] = format_utc(value) if isinstance(value, datetime) else value
    raw = row.get("progress")
    view["progress"] = json.loads(raw) if isinstance(raw, str) else None
    view["resource"] = view["resource"] or "users"  # rows from before groups were discovered
    return view
