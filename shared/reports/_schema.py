"""The status report of docs/contract.md: validation that names every failing field, and
canonical JSON.

Choices where the contract is silent (documented in the README):
- `reportedAt` must carry a UTC designator or an offset (`Z`, `+02:00`); a naive time is rejected
  because it cannot be ordered against other devices' reports. Offsets are normalised to UTC.
  A time more than `MAX_CLOCK_SKEW` ahead of the service clock is rejected, and so is one before
  `EARLIEST_REPORT_TIME` (1601-01-01, the first instant a Table storage DateTime holds) or one
  whose offset moves it off the calendar (`0001-01-01T00:00:00+01:00`).
- `ccmsetupExitCode` accepts signed or unsigned 32-bit values and keeps the signed form (as
  .NET's `Process.ExitCode` and PowerShell's `$LASTEXITCODE` show it).
- Unknown top-level fields are rejected (a typo such as `stgae` would otherwise vanish silently).
- `dsregcmd` is bounded (keys, value lengths, total UTF-8 size) so the canonical message always
  fits a base64 queue message (64 KiB) and a Table string property (32 Ki UTF-16 units).
- Every string must be encodable as UTF-8: JSON can carry a lone UTF-16 surrogate (`"\ud800"`)
  that no queue or table can store; it is refused naming the field.

One validation and one serialisation: `POST /api/reports` validates with `parse_report` and
enqueues `queue_message` (shared/reports/_message.py); the recorder reads that message with
`parse_message`, which validates with the same `parse_report`. `queue_message` re-reads its own
text before returning it, so a report whose message would not read back as the same report is
refused at the POST (400), never answered 202 and then rejected by the recorder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from shared.errors import InvalidReport
from shared.ids import parse_guid
from shared.times import format_utc

STAGES: Final = ("bundle-received", "installing", "installed", "failed")
MAX_CLOCK_SKEW: Final = timedelta(minutes=5)
MAX_DSREGCMD_KEYS: Final = 256
MAX_DSREGCMD_KEY_CHARS: Final = 128
MAX_DSREGCMD_VALUE_CHARS: Final = 2048
MAX_DSREGCMD_JSON_BYTES: Final = 16 * 1024
EARLIEST_REPORT_TIME: Final = datetime(1601, 1, 1, tzinfo=UTC)
# A body of thousands of unknown keys gets a problem naming the first few, not all of them.
MAX_UNKNOWN_FIELDS_NAMED: Final = 20
_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1
_UINT32_MAX: Final = 2**32 - 1
# A NetBIOS or DNS host name: letters, digits, '-', '_', '.'; at most 253 characters.
_HOSTNAME = re.compile(r"[A-Za-z0-9_](?:[A-Za-z0-9_.-]{0,251}[A-Za-z0-9_])?")
_CLIENT_VERSION = re.compile(r"[0-9]{1,5}(?:\.[0-9]{1,5}){1,3}")
_SITE_CODE = re.compile(r"[A-Za-z0-9]{3}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_REQUIRED: Final = (
    "reportId",
    "deviceId",
    "tenantId",
    "hostname",
    "stage",
    "azureAdJoined",
    "domainJoined",
    "ccmsetupExitCode",
    "clientVersion",
    "siteCode",
    "reportedAt",
)
# userObjectId: the user whose token the client used; installErrorCode: the last error the
# client logged (ClientIDManagerStartup.log, the ESP's ConfigMgr step), e.g. 0x87D00231.
_OPTIONAL: Final = ("dsregcmd", "userObjectId", "installErrorCode")


@dataclass(frozen=True, slots=True)
class StatusReport:
    """A validated report; identifiers lower-case, `reported_at` aware and in UTC."""

    report_id: str
    device_id: str
    tenant_id: str
    hostname: str
    stage: str
    azure_ad_joined: bool
    domain_joined: bool
    ccmsetup_exit_code: int | None
    client_version: str | None
    site_code: str | None
    reported_at: datetime
    dsregcmd: dict[str, str] = field(default_factory=dict)
    user_object_id: str | None = None
    install_error_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "reportId": self.report_id,
            "deviceId": self.device_id,
            "tenantId": self.tenant_id,
            "hostname": self.hostname,
            "stage": self.stage,
            "azureAdJoined": self.azure_ad_joined,
            "domainJoined": self.domain_joined,
            "ccmsetupExitCode": self.ccmsetup_exit_code,
            "clientVersion": self.client_version,
            "siteCode": self.site_code,
            "reportedAt": format_utc(self.reported_at),
        }
        if self.dsregcmd:
            body["dsregcmd"] = self.dsregcmd
        if self.user_object_id is not None:
            body["userObjectId"] = self.user_object_id
        if self.install_error_code is not None:
            body["installErrorCode"] = self.install_error_code
        return body

    def canonical(self) -> str:
        """Sorted keys, no spaces: the same report always gives the same message text."""
        return json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def parse_report(data: object, *, now: datetime | None = None) -> StatusReport:
    """Validate decoded JSON against the report schema; raise `InvalidReport` naming every field."""
    if not isinstance(data, dict):
        raise InvalidReport({"/": "the body must be a JSON object"})
    errors: dict[str, str] = {}
    for name in _REQUIRED:
        if name not in data:
            errors[name] = "is required"
    unknown = [str(name) for name in data if name not in _REQUIRED and name not in _OPTIONAL]
    for name in unknown[:MAX_UNKNOWN_FIELDS_NAMED]:
        errors[_shown(name[:100])] = "is not a field of the status report"
    checks = _Checks(data, errors)
    report_id = checks.guid("reportId")
    device_id = checks.guid("deviceId")
    tenant_id = checks.guid("tenantId")
    hostname = checks.pattern("hostname", _HOSTNAME, "a host name of letters, digits, '-', '.'")
    stage = checks.choice("stage", STAGES)
    azure_ad_joined = checks.boolean("azureAdJoined")
    domain_joined = checks.boolean("domainJoined")
    exit_code = checks.exit_code("ccmsetupExitCode")
    client_version = checks.nullable_pattern(
        "clientVersion", _CLIENT_VERSION, "a version such as 5.00.9122.1000, or null"
    )
    site_code = checks.nullable_pattern("siteCode", _SITE_CODE, "a three-character site code")
    reported_at = checks.utc_time("reportedAt", now or datetime.now(UTC))
    dsregcmd = checks.string_map("dsregcmd")
    user_object_id = checks.guid("userObjectId") if data.get("userObjectId") is not None else None
    install_error_code = checks.exit_code("installErrorCode")
    if errors:
        raise InvalidReport(errors)
    # No errors means every required field parsed; the checks below only narrow the types.
    assert report_id
    assert device_id
    assert tenant_id
    assert hostname
    assert stage
    assert reported_at
    assert azure_ad_joined is not None
    assert domain_joined is not None
    return StatusReport(
        report_id=report_id,
        device_id=device_id,
        tenant_id=tenant_id,
        hostname=hostname,
        stage=stage,
        azure_ad_joined=azure_ad_joined,
        domain_joined=domain_joined,
        ccmsetup_exit_code=exit_code,
        client_version=client_version,
        site_code=site_code.upper() if site_code else None,
        reported_at=reported_at,
        dsregcmd=dsregcmd,
        user_object_id=user_object_id,
        install_error_code=install_error_code,
    )


def _shown(text: str) -> str:
    """`text` as a field name can show it: a lone surrogate becomes its escape (`\\ud800`)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def load_json(text: str | bytes) -> Any:
    """The JSON value of a body or message; undecodable text is an `InvalidReport` of `/`."""
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as error:
        reason = f"not valid JSON ({type(error).__name__})"
        if isinstance(error, json.JSONDecodeError):
            reason = f"not valid JSON: {error.msg} at line {error.lineno} column {error.colno}"
        raise InvalidReport({"/": reason}) from None


def parse_report_text(text: str | bytes, *, now: datetime | None = None) -> StatusReport:
    """Decode JSON text and validate it; undecodable text is an `InvalidReport` of the body."""
    return parse_report(load_json(text), now=now)


class _Checks:
    """One check per field kind; each records its failure in `errors` and returns None."""

    def __init__(self, data: dict[str, Any], errors: dict[str, str]) -> None:
        self._data = data
        self._errors = errors

    def _fail(self, name: str, detail: str) -> None:
        self._errors[name] = detail

    def guid(self, name: str) -> str | None:
        value = self._data.get(name)
        if value is None and name not in self._data:
            return None
        guid = parse_guid(value)
        if guid is None:
            self._fail(name, "must be a GUID such as 0f8fad5b-d9cb-469f-a165-70867728950e")
        return guid

    def pattern(self, name: str, pattern: re.Pattern[str], expected: str) -> str | None:
        if name not in self._data:
            return None
        value = self._data[name]
        if isinstance(value, str) and pattern.fullmatch(value):
            return value
        self._fail(name, f"must be {expected}")
        return None

    def nullable_pattern(self, name: str, pattern: re.Pattern[str], expected: str) -> str | None:
        if self._data.get(name) is None:
            return None
        return self.pattern(name, pattern, expected)

    def choice(self, name: str, choices: tuple[str, ...]) -> str | None:
        if name not in self._data:
            return None
        value = self._data[name]
        if isinstance(value, str) and value in choices:
            return value
        self._fail(name, "must be one of " + ", ".join(choices))
        return None

    def boolean(self, name: str) -> bool | None:
        if name not in self._data:
            return None
        value = self._data[name]
        if isinstance(value, bool):
            return value
        self._fail(name, "must be true or false")
        return None

    def exit_code(self, name: str) -> int | None:
        value: object = self._data.get(name)
        if value is None:
            return None
        if (
            isinstance(value, int)
            and not isinstance(value, bool)
            and _INT32_MIN <= value <= _UINT32_MAX
        ):
            # One form for one code: 0x80070005 as unsigned or as signed is the same failure.
            return value - 2**32 if value > _INT32_MAX else value
        self._fail(name, "must be a whole number (a Windows exit code) or null")
        return None

    def utc_time(self, name: str, now: datetime) -> datetime | None:
        if name not in self._data:
            return None
        value = self._data[name]
        expected = "must be an ISO-8601 time with Z or an offset, such as 2026-11-27T15:04:05Z"
        if not isinstance(value, str) or len(value) > 40:
            self._fail(name, expected)
            return None
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            self._fail(name, expected)
            return None
        if moment.tzinfo is None:
            self._fail(name, "must say its time zone (Z or an offset); a local time is ambiguous")
            return None
        try:
            moment = moment.astimezone(UTC)
        except OverflowError:  # 0001-01-01T00:00+01:00 or 9999-12-31T23:59-01:00: off the calendar
            ahead = (moment.utcoffset() or timedelta()) < timedelta()
            moment = datetime.max.replace(tzinfo=UTC) if ahead else datetime.min.replace(tzinfo=UTC)
        if moment < EARLIEST_REPORT_TIME:
            self._fail(name, "is before 1601-01-01T00:00:00Z, the earliest time storage holds")
            return None
        if moment > now + MAX_CLOCK_SKEW:
            self._fail(name, "is in the future (more than 5 minutes ahead of the service clock)")
            return None
        return moment

    def string_map(self, name: str) -> dict[str, str]:
        value = self._data.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            self._fail(name, "must be an object of string keys to string values")
            return {}
        if len(value) > MAX_DSREGCMD_KEYS:
            self._fail(name, f"has more than {MAX_DSREGCMD_KEYS} keys")
            return {}
        for key, item in value.items():
            field = f"{name}/{_shown(key[:64])}"
            if not key or len(key) > MAX_DSREGCMD_KEY_CHARS or _CONTROL.search(key):
                self._fail(field, "key must be 1 to 128 printable characters")
                return {}
            if _SURROGATE.search(key):
                self._fail(field, "key holds a lone UTF-16 surrogate (not Unicode text)")
                return {}
            if len(item) > MAX_DSREGCMD_VALUE_CHARS or _CONTROL.search(item):
                self._fail(field, "value must be at most 2048 printable characters")
                return {}
            if _SURROGATE.search(item):
                self._fail(field, "value holds a lone UTF-16 surrogate (not Unicode text)")
                return {}
        size = len(json.dumps(value, ensure_ascii=False).encode("utf-8"))
        if size > MAX_DSREGCMD_JSON_BYTES:
            self._fail(name, f"is larger than {MAX_DSREGCMD_JSON_BYTES} bytes as UTF-8 JSON")
            return {}
        return dict(value)
