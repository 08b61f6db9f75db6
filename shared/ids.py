"""Identifiers as Entra ID and ConfigMgr write them: one GUID rule for every input."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Final

# Strictly 8-4-4-4-12 hex digits: `uuid.UUID` also takes braces, URNs and misplaced hyphens.
_GUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


# .NET DateTime.MaxValue.Ticks: the usual Table storage "inverted time" base, so the newest row of
# a partition sorts first (RowKeys compare as strings; 19 digits keep them fixed width).
_MAX_TICKS: Final = 3155378975999999999
_EPOCH_TICKS: Final = 621355968000000000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)


def inverted_ticks(moment: datetime) -> str:
    """A RowKey prefix that sorts newer moments first (100 ns resolution, 19 digits)."""
    delta = moment.astimezone(UTC) - _EPOCH
    ticks = _EPOCH_TICKS + (delta.days * 86_400 + delta.seconds) * 10**7 + delta.microseconds * 10
    return f"{_MAX_TICKS - ticks:019d}"


def parse_guid(value: object) -> str | None:
    """The canonical lower-case form of a GUID string, or None if `value` is not one."""
    if isinstance(value, str) and _GUID.fullmatch(value):
        return value.lower()
    return None
