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

from shared.auth import AuthenticatedDevice
from shared.errors import BadRequest, Forbidden, InvalidReport, PayloadTooLarge
from shared.names import DEVICE_STATUS_QUEUE
from shared.reports._message import queue_message
from shared.reports._schema import StatusReport, parse_report_text
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


def validate_report(
    body: bytes, *, caller_tenant_id: str, proven_device_id: str | None = None
) -> StatusReport:
    """The report in `body`, or 400 naming every failing field, or 403 for another tenant or
    (with a device proof) another device than the proven one: a device reports for itself."""
    try:
        report = parse_report_text(body)
    except InvalidReport as error:
        raise _invalid(error) from None
    if report.tenant_id != caller_tenant_id.lower():
        raise Forbidden("The report's tenantId is not the tenant of the access token.")
    if proven_device_id is not None and report.device_id != proven_device_id:
        raise Forbidden("The report's deviceId is not the device that signed the proof.")
    return report


async def enqueue_report(report: StatusReport, provenance: dict[str, str]) -> None:
    """Put the report and its provenance on `device-status`; returns once Queue storage has
    stored it. 400 when the message would not read back as this report (see `_message`): what
    the POST accepts, the recorder records."""
    try:
        message = queue_message(report, provenance)
    except InvalidReport as error:
        raise _invalid(error) from None
    queue = await get_storage().queue(DEVICE_STATUS_QUEUE)
    async with translate_errors():
        sent = await queue.send_message(message)
    _log.info(
        "report enqueued",
        extra={
            "reportId": report.report_id,
            "deviceId": report.device_id,
            "tenantId": report.tenant_id,
            "messageId": sent.id,
        },
    )


def _invalid(error: InvalidReport) -> BadRequest:
    return BadRequest(
        "The status report is not valid: " + ", ".join(error.errors), errors=error.errors
    )


async def accept_report(body: bytes, *, caller: AuthenticatedDevice) -> StatusReport:
    """Validate (after `check_size`) and enqueue; the report once it is durably on the queue."""
    report = validate_report(
        body, caller_tenant_id=caller.tenant_id, proven_device_id=caller.device_id
    )
    await enqueue_report(report, caller.provenance())
    return report
