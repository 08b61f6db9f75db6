"""`POST /api/reports`: size limit, schema, tenant check, then a durable enqueue.

Why not a queue output binding (as the issue suggests): the host writes an output binding AFTER
the function has returned its response, so the function could neither answer 503 when storage is
down nor know that the message was stored before saying 202. Instead the function sends the
message itself, base64 as the host's queue trigger expects (`Storage.queue` clients encode it), and
answers 202 only after Queue storage acknowledged the write.
"""

from __future__ import annotations

import logging
from typing import Final

from shared.errors import BadRequest, Forbidden, PayloadTooLarge
from shared.names import DEVICE_STATUS_QUEUE
from shared.reports._schema import InvalidReport, StatusReport, parse_report_text
from shared.storage import get_storage, translate_errors

MAX_BODY_BYTES: Final = 64 * 1024
_log = logging.getLogger(__name__)


def check_size(content_length: str | None, body: bytes) -> None:
    """413 when the declared or the actual body is over 64 KiB (checked before any parsing)."""
    declared: int | None = None
    if content_length is not None:
        try:
            declared = int(content_length)
        except ValueError:
            raise BadRequest(
                "Content-Length is not a number.", errors={"Content-Length": "must be a number"}
            ) from None
    if (declared is not None and declared > MAX_BODY_BYTES) or len(body) > MAX_BODY_BYTES:
        raise PayloadTooLarge(f"A status report may be at most {MAX_BODY_BYTES} bytes.")


def validate_report(body: bytes, *, caller_tenant_id: str) -> StatusReport:
    """The report in `body`, or 400 naming every failing field, or 403 for another tenant.

    A report is valid when its queue message reads back as the same report (see `_schema`): what
    this accepts, the recorder records."""
    try:
        report = parse_report_text(body)
        report.canonical_message()
    except InvalidReport as error:
        raise BadRequest(
            "The status report is not valid: " + ", ".join(error.errors), errors=error.errors
        ) from None
    if report.tenant_id != caller_tenant_id.lower():
        raise Forbidden("The report's tenantId is not the tenant of the access token.")
    return report


async def enqueue_report(report: StatusReport) -> None:
    """Put the report's message on `device-status`; returns once Queue storage has stored it."""
    queue = await get_storage().queue(DEVICE_STATUS_QUEUE)
    async with translate_errors():
        sent = await queue.send_message(report.canonical_message())
    _log.info(
        "report enqueued",
        extra={
            "reportId": report.report_id,
            "deviceId": report.device_id,
            "tenantId": report.tenant_id,
            "messageId": sent.id,
        },
    )


async def accept_report(body: bytes, *, caller_tenant_id: str) -> StatusReport:
    """Validate (after `check_size`) and enqueue; the report once it is durably on the queue."""
    report = validate_report(body, caller_tenant_id=caller_tenant_id)
    await enqueue_report(report)
    return report
