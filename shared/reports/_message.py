"""The `device-status` queue message: the report, plus how its sender was authenticated.

The message is the report's canonical JSON with one more member, `authentication`
(`{"auth": "device", "certThumbprint": "...", "oid": "..."}`), which `POST /api/reports` adds from
what it proved. A device cannot forge it through the body: `authentication` is not a field of the
report, so a body carrying it is a 400 like any unknown field, and the recorder still refuses
every other unknown field. Only someone who can write to the queue itself (a storage credential)
can put it there. A message without it (queued before devices proved themselves) is recorded
without provenance.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

from shared.errors import InvalidReport
from shared.ids import parse_guid
from shared.reports._schema import StatusReport, load_json, parse_report
from shared.settings import BOOTSTRAP_AUTH_MODES

PROVENANCE_FIELD: Final = "authentication"
_THUMBPRINT: Final = re.compile(r"[0-9A-F]{40}")


def queue_message(report: StatusReport, provenance: Mapping[str, str]) -> str:
    """Sorted keys, no spaces: the same report and sender always give the same text.

    The one serialisation of a report, checked against the one reading (`parse_message`, what
    the recorder runs): a text that would not read back as this report and provenance (a time
    the text cannot carry, a string UTF-8 cannot encode) is `InvalidReport`, so the POST refuses
    it instead of answering 202 for a message the recorder would reject."""
    body = {**report.to_json(), PROVENANCE_FIELD: dict(provenance)}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    try:
        again = parse_message(text.encode("utf-8"))
    except (InvalidReport, UnicodeEncodeError):
        again = None
    if again != (report, {k: v for k, v in provenance.items() if v is not None}):
        raise InvalidReport({"/": "cannot be recorded as sent"})
    return text


def parse_message(text: str | bytes) -> tuple[StatusReport, dict[str, str] | None]:
    """The report and its provenance; `InvalidReport` naming what is wrong with either."""
    data = load_json(text)
    provenance = None
    if isinstance(data, dict) and PROVENANCE_FIELD in data:
        provenance = _provenance(data.pop(PROVENANCE_FIELD))
    return parse_report(data), provenance


def _provenance(value: object) -> dict[str, str]:
    problem = {PROVENANCE_FIELD: "must be {auth, certThumbprint?, oid?} as the service writes it"}
    if not isinstance(value, dict) or not set(value) <= {"auth", "certThumbprint", "oid"}:
        raise InvalidReport(problem)
    auth, thumbprint, oid = value.get("auth"), value.get("certThumbprint"), value.get("oid")
    if auth not in BOOTSTRAP_AUTH_MODES:
        raise InvalidReport(problem)
    if thumbprint is not None and not (
        isinstance(thumbprint, str) and _THUMBPRINT.fullmatch(thumbprint)
    ):
        raise InvalidReport(problem)
    if oid is not None and parse_guid(oid) is None:
        raise InvalidReport(problem)
    return {name: item for name, item in value.items() if item is not None}
