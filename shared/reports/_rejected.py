"""`RejectedReports`: messages that can never be a report, kept with their raw text and why."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Final

from shared.names import REJECTED_REPORTS
from shared.storage import Storage, get_storage, translate_errors

# A Table string property holds 32 Ki UTF-16 characters; keep well inside it.
MAX_RAW_CHARS: Final = 16 * 1024
MAX_REASON_CHARS: Final = 4 * 1024
_ERRORS_KEPT: Final = 40  # at most ~40 x (100-char field + detail): well inside a property
_log = logging.getLogger(__name__)


async def reject_message(
    body: bytes,
    *,
    errors: Mapping[str, str],
    message_id: str | None,
    dequeue_count: int | None,
    queue: str,
    storage: Storage | None = None,
) -> None:
    """Store the message (truncated if huge, its size noted) under today's date and its id.

    An upsert keyed by the message id, so a redelivered rejection is one row, not two.
    """
    now = datetime.now(UTC)
    raw = body.decode("utf-8", errors="backslashreplace")
    reason = "; ".join(f"{field}: {detail}" for field, detail in errors.items())
    entity = {
        "PartitionKey": now.strftime("%Y%m%d"),
        "RowKey": _safe_row_key(message_id) or str(uuid.uuid4()),
        "raw": raw[:MAX_RAW_CHARS],
        "rawSize": len(body),
        "rawTruncated": len(raw) > MAX_RAW_CHARS,
        "reason": reason[:MAX_REASON_CHARS],
        "errors": json.dumps(dict(list(errors.items())[:_ERRORS_KEPT]), ensure_ascii=False),
        "dequeueCount": dequeue_count or 0,
        "queue": queue,
        "messageId": message_id,
        "rejectedAt": now,
    }
    table = await (storage or get_storage()).table(REJECTED_REPORTS)
    async with translate_errors():
        await table.upsert_entity({k: v for k, v in entity.items() if v is not None})
    _log.warning(
        "report rejected: %s", reason[:200], extra={"messageId": message_id, "queue": queue}
    )


def _safe_row_key(message_id: str | None) -> str | None:
    """Queue message ids are GUIDs; anything with characters a RowKey forbids gets a uuid."""
    if not message_id or any(c in message_id for c in "/\\#?") or len(message_id) > 200:
        return None
    return message_id
