"""Parse the text `dsregcmd /status` prints on Windows 10/11 into a status report's fields.

The output is a series of sections, each under a banner, with `Key : Value` lines whose keys are
right-aligned (so they carry leading spaces and may contain spaces themselves):

    +----------------------------------------------------------------------+
    | Device State                                                         |
    +----------------------------------------------------------------------+

                 AzureAdJoined : YES
              EnterpriseJoined : NO
                  DomainJoined : YES
                    DomainName : CONTOSO
                   Device Name : PC01.contoso.com

Values may themselves contain colons (URLs, times), so a line splits at its first " : ".
`client/Dsregcmd.ps1` mirrors this parser for PowerShell 5.1; keep the two in step. A device tool:
the standard library only, nothing of the server stack.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Final

_BANNER_TITLE = re.compile(r"^\s*\|\s*(?P<title>.*?)\s*\|?\s*$")
_RULE = re.compile(r"^\s*\+-+\+\s*$")
_KEY_VALUE = re.compile(r"^\s*(?P<key>[^:|+]+?)\s+:(?:\s+(?P<value>.*?))?\s*$")
_YES: Final = "YES"
_GUID: Final = re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")


@dataclass(frozen=True, slots=True)
class DsregcmdStatus:
    """What a status report takes from `dsregcmd /status`, plus every key and value seen."""

    azure_ad_joined: bool
    domain_joined: bool
    tenant_id: str | None
    device_id: str | None
    hostname: str | None
    values: dict[str, str] = field(default_factory=dict)
    sections: dict[str, dict[str, str]] = field(default_factory=dict)


def parse_dsregcmd(text: str) -> DsregcmdStatus:
    """Parse the whole output. Keys keep dsregcmd's spelling; a key seen again in a later
    section is stored in `values` as "Section/Key" so nothing is overwritten."""
    sections: dict[str, dict[str, str]] = {}
    values: dict[str, str] = {}
    current = ""
    previous_was_rule = False
    for line in text.splitlines():
        if _RULE.match(line):
            previous_was_rule = True
            continue
        banner = _BANNER_TITLE.match(line) if previous_was_rule else None
        previous_was_rule = False
        if banner:
            current = banner.group("title")
            sections.setdefault(current, {})
            continue
        pair = _KEY_VALUE.match(line)
        if not pair:
            continue
        key, value = pair.group("key").strip(), (pair.group("value") or "").strip()
        sections.setdefault(current, {})[key] = value
        values[f"{current}/{key}" if key in values else key] = value
    return DsregcmdStatus(
        azure_ad_joined=values.get("AzureAdJoined", "").upper() == _YES,
        domain_joined=values.get("DomainJoined", "").upper() == _YES,
        tenant_id=_guid(values.get("TenantId")),
        device_id=_guid(values.get("DeviceId")),
        hostname=values.get("Device Name") or None,
        values=values,
        sections=sections,
    )


def _guid(value: str | None) -> str | None:
    if not value:
        return None
    text = value.strip().strip("{}")
    return text.lower() if _GUID.fullmatch(text) else None
