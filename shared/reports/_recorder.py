"""The `record_status` queue trigger's logic: each report recorded exactly once in effect.

A message may be delivered more than once (a host that dies after writing but before deleting the
message, a visibility timeout that runs out) and reports may arrive out of order. Three steps,
each idempotent, make a redelivery harmless at any point:

1. Insert the `DeviceStatusHistory` row (PK device, RK inverted reportedAt + reportId). If it
   exists, this report was seen before; its `counted` flag says whether step 2 finished.
2. Fold the report into the `DeviceStatus` row (PK tenant, RK device) with an ETag-conditional
   write: create-if-absent or replace-if-unchanged; a conflict re-reads and retries (bounded).
   The newest report by (reportedAt, reportId) wins the latest columns; `reportCount` grows by one;
   and the report id joins `countedReportIds`, a small bounded list written in the SAME conditional
   write, so a redelivery between steps 2 and 3 sees it was counted and counts nothing.
3. Mark the history row `counted`. After that, a redelivery stops at step 1.

The bounded list only has to cover the gap between steps 2 and 3 for one device (a crash there is
redelivered after the queue's visibility timeout, 30 s); `COUNTED_IDS_KEPT` reports of the same
device inside that gap would be needed to count one twice.

A message that can never be a report (not JSON, breaks the schema) goes to `RejectedReports` with
its raw text and why, and the function returns normally: it is not retried forever. A storage
error propagates so the host retries and, after `maxDequeueCount`, moves it to the poison queue.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import random
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.exceptions import (
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.errors import BootstrapError, InvalidReport
from shared.names import DEVICE_STATUS, DEVICE_STATUS_HISTORY, DEVICE_STATUS_QUEUE
from shared.reports._entities import history_entity, history_row_key, latest_properties
from shared.reports._message import parse_message
from shared.reports._rejected import reject_message
from shared.reports._schema import StatusReport
from shared.storage import Storage, get_storage, translate_errors

COUNTED_IDS_KEPT: Final = 32
# How the report's sender was authenticated (README "Device trust"), on both tables' rows.
PROVENANCE_PROPERTIES: Final = ("auth", "certThumbprint", "oid")
# A burst of one device's reports (a batch of 16 in flight) converges in ~16 rounds at worst.
MAX_WRITE_ATTEMPTS: Final = 40
_log = logging.getLogger(__name__)


class RecordOutcome(enum.Enum):
    """What recording one status message did."""

    RECORDED = "recorded"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"


class StatusContention(BootstrapError):
    """The DeviceStatus row kept changing under us; the host retries the message later."""


async def record_message(
    body: bytes,
    *,
    message_id: str | None,
    dequeue_count: int | None,
    queue: str | None = None,
    storage: Storage | None = None,
) -> RecordOutcome:
    """Record one `device-status` message, or keep it in `RejectedReports` if it is no report.

    `storage` defaults to this loop's (`get_storage()`); tests pass their own."""
    try:
        report, provenance = parse_message(body)
    except InvalidReport as error:
        await reject_message(
            body,
            errors=error.errors,
            message_id=message_id,
            dequeue_count=dequeue_count,
            queue=queue or DEVICE_STATUS_QUEUE,
            storage=storage,
        )
        return RecordOutcome.REJECTED
    return await record_report(
        report, message_id=message_id, provenance=provenance, storage=storage
    )


async def record_report(
    report: StatusReport,
    *,
    message_id: str | None = None,
    provenance: Mapping[str, str] | None = None,
    storage: Storage | None = None,
) -> RecordOutcome:
    """Record one report; `provenance` (auth, certThumbprint, oid) says how its sender was
    authenticated and is kept on its history row and, while it is the newest, the status row."""
    properties = _provenance_properties(provenance)
    storage = storage or get_storage()
    history = await storage.table(DEVICE_STATUS_HISTORY)
    status = await storage.table(DEVICE_STATUS)
    ids = {"deviceId": report.device_id, "reportId": report.report_id, "messageId": message_id}
    async with translate_errors():
        if await _insert_history(history, report, message_id, properties):
            _log.info("duplicate report ignored", extra=ids)
            return RecordOutcome.DUPLICATE
        await _fold_into_status(status, report, properties)
        await history.update_entity(
            {"PartitionKey": report.device_id, "RowKey": history_row_key(report), "counted": True},
            mode=UpdateMode.MERGE,
        )
    _log.info("report recorded", extra={**ids, "tenantId": report.tenant_id})
    return RecordOutcome.RECORDED


def _provenance_properties(provenance: Mapping[str, str] | None) -> dict[str, str | None]:
    """Always all three names, so a newer report without one clears the older report's value."""
    given = provenance or {}
    return {name: given.get(name) for name in PROVENANCE_PROPERTIES}


async def _insert_history(
    history: TableClient,
    report: StatusReport,
    message_id: str | None,
    provenance: Mapping[str, str | None],
) -> bool:
    """Insert the history row; True when it already existed AND was fully counted."""
    entity = history_entity(report, message_id=message_id)
    entity.update({name: value for name, value in provenance.items() if value is not None})
    try:
        await history.create_entity(entity)
    except ResourceExistsError:
        row = await history.get_entity(report.device_id, history_row_key(report))
        return bool(row.get("counted"))
    return False


async def _fold_into_status(
    status: TableClient, report: StatusReport, provenance: Mapping[str, str | None]
) -> None:
    for attempt in range(MAX_WRITE_ATTEMPTS):
        try:
            row = await status.get_entity(report.tenant_id, report.device_id)
        except ResourceNotFoundError:
            try:
                await status.create_entity(_first_status(report, provenance))
                return
            except ResourceExistsError:
                await _back_off(attempt)
                continue
        counted = _counted_ids(row)
        if report.report_id in counted:
            return
        try:
            await status.update_entity(
                _folded_status(row, report, counted, provenance),
                mode=UpdateMode.REPLACE,
                etag=row.metadata["etag"],
                match_condition=MatchConditions.IfNotModified,
            )
            return
        except ResourceModifiedError:
            await _back_off(attempt)
    raise StatusContention(f"DeviceStatus {report.device_id} changed {MAX_WRITE_ATTEMPTS} times")


async def _back_off(attempt: int) -> None:
    """Spread competing writers apart: jittered, growing, at most 100 ms."""
    await asyncio.sleep(random.uniform(0, min(0.1, 0.005 * 2**attempt)))  # noqa: S311 (jitter)


def _counted_ids(row: Mapping[str, Any]) -> list[str]:
    raw = row.get("countedReportIds") or ""
    return [item for item in str(raw).split(",") if item]


def _first_status(report: StatusReport, provenance: Mapping[str, str | None]) -> dict[str, Any]:
    latest = {**latest_properties(report), **provenance}
    return {
        "PartitionKey": report.tenant_id,
        "RowKey": report.device_id,
        **{k: v for k, v in latest.items() if v is not None},
        "lastReportAt": report.reported_at,
        "reportCount": 1,
        "countedReportIds": report.report_id,
        "updatedAt": datetime.now(UTC),
    }


def _folded_status(
    row: Mapping[str, Any],
    report: StatusReport,
    counted: list[str],
    provenance: Mapping[str, str | None],
) -> dict[str, Any]:
    entity = dict(row)
    if _is_newer(report, row):
        for name, value in {**latest_properties(report), **provenance}.items():
            if value is None:
                entity.pop(name, None)
            else:
                entity[name] = value
        entity["lastReportAt"] = report.reported_at
    entity["reportCount"] = int(row.get("reportCount", 0)) + 1
    entity["countedReportIds"] = ",".join([*counted, report.report_id][-COUNTED_IDS_KEPT:])
    entity["updatedAt"] = datetime.now(UTC)
    return entity


def _is_newer(report: StatusReport, row: Mapping[str, Any]) -> bool:
    """Order by reportedAt, then reportId so that equal times still pick one winner everywhere."""
    current_at = row.get("reportedAt")
    if not isinstance(current_at, datetime):
        return True
    return (report.reported_at, report.report_id) > (current_at, str(row.get("reportId", "")))
