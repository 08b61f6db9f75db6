"""One time format across the API: RFC 3339 in UTC with `Z` (2026-11-27T15:04:05.000000Z)."""

from __future__ import annotations

from datetime import UTC, datetime


def format_utc(moment: datetime) -> str:
    """`moment` (a naive time is taken as UTC, as Table storage returns it) in the API's form."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    # isoformat, not strftime: strftime writes the year 999 as '999', not RFC 3339's '0999'.
    utc = moment.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="microseconds") + "Z"


def parse_utc(value: str) -> datetime | None:
    """An RFC 3339 time with `Z` or an offset, in UTC; None when it is not one."""
    if len(value) > 40:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        return None
    return moment.astimezone(UTC)
