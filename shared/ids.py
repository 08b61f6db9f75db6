"""Identifiers as Entra ID and ConfigMgr write them: one GUID rule for every input."""

from __future__ import annotations

import re
from typing import Final

# Strictly 8-4-4-4-12 hex digits: `uuid.UUID` also takes braces, URNs and misplaced hyphens.
_GUID: Final = re.compile(r"[0-9a-fA-F]{8}-(?:[0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}")


def parse_guid(value: object) -> str | None:
    """The canonical lower-case form of a GUID string, or None if `value` is not one."""
    if isinstance(value, str) and _GUID.fullmatch(value):
        return value.lower()
    return None
