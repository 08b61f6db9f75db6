"""An install profile and the one validation of its fields.

Each ccmsetup value goes through the same validator as the setting it overrides
(`shared.settings.value_reader`), so a profile can hold nothing that the settings would refuse.
Extra ccmsetup.exe properties come from an allow-list of documented client installation
properties (ConfigMgr "About client installation parameters and properties"), each with its own
value check; the AAD* properties stay the tenant's (the settings fix them), CCMHOSTNAME,
SMSSITECODE and SMSMP have their own fields, and the properties that change the client's
trust (SMSSIGNCERT, SMSPUBLICROOTKEY, SMSROOTKEYPATH, RESETKEYINFORMATION, the CCMCERT* ones)
are not offered at all. A 400 names every bad field at once.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final

from shared.errors import BadRequest, ConfigurationProblem, SettingError
from shared.ids import parse_guid
from shared.settings import value_reader

DEFAULT_PROFILE: Final = "default"  # the `profile` claim when no profile matched
# `default` is the claim when none matched; /api/profiles/resolve is the explaining route.
RESERVED_NAMES: Final = frozenset({DEFAULT_PROFILE, "resolve"})
NAME_PATTERN: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MIN_PRIORITY: Final = 0
MAX_PRIORITY: Final = 1_000_000
BODY_FIELDS: Final = (
    "groupId",
    "priority",
    "ccmHostname",
    "siteCode",
    "managementPoint",
    "source",
    "noCrlCheck",
    "properties",
)
MAX_PROPERTY_LENGTH: Final = 240


def _integer(low: int, high: int) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        ok = value.isdigit() and len(value) <= 10 and low <= int(value) <= high
        return None if ok else f"a whole number from {low} to {high}"

    return check


def _one_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        return None if value.upper() in choices else "one of " + ", ".join(choices)

    return check


def _list_of(*choices: str) -> Callable[[str], str | None]:
    def check(value: str) -> str | None:
        items = value.upper().split(";")
        ok = all(items) and set(items) <= set(choices) and len(set(items)) == len(items)
        return None if ok else "a ;-separated list of " + ", ".join(choices)

    return check


def _setting(kind: str, expected: str) -> Callable[[str], str | None]:
    """A value the settings validate (a folder, a host name)."""

    def check(value: str) -> str | None:
        try:
            getattr(value_reader({"value": value}), kind)("value")
        except SettingError:
            return expected
        return None

    return check


def _pattern(regex: str, expected: str) -> Callable[[str], str | None]:
    compiled = re.compile(regex)
    return lambda value: None if compiled.fullmatch(value) else expected


_BOOLEAN = _one_of("TRUE", "FALSE")
_FOLDER = _setting(
    "windows_path", r"a local folder such as C:\ccmcache (no quotes or % ^ & | < > !)"
)
_HOST = _setting("host_names", "a DNS name such as contoso.com")

# Documented ccmsetup.exe properties that an install profile may set, by their documented name.
PROPERTY_CHECKS: Final[dict[str, Callable[[str], str | None]]] = {
    "SMSCACHESIZE": _integer(1, 10_000_000),  # MB, or percent with a PERCENT* cache flag
    "SMSCACHEFLAGS": _list_of(
        "PERCENTDISKSPACE",
        "PERCENTFREEDISKSPACE",
        "MAXDRIVE",
        "MAXDRIVESPACE",
        "NTFSONLY",
        "COMPRESS",
        "FAILIFNOSPACE",
    ),
    "SMSCACHEDIR": _FOLDER,
    "CCMINSTALLDIR": _FOLDER,
    "CCMENABLELOGGING": _BOOLEAN,
    "CCMLOGLEVEL": _integer(0, 3),
    "CCMLOGMAXSIZE": _integer(10_000, 2_147_483_647),  # bytes
    "CCMLOGMAXHISTORY": _integer(0, 1000),
    "CCMDEBUGLOGGING": _one_of("0", "1"),
    "CCMEVALINTERVAL": _integer(1, 1440),  # minutes
    "CCMEVALHOUR": _integer(0, 23),
    "CCMHTTPPORT": _integer(1, 65535),
    "CCMHTTPSPORT": _integer(1, 65535),
    "CCMALWAYSINF": _one_of("0", "1"),
    "DISABLESITEOPT": _BOOLEAN,
    "DISABLECACHEOPT": _BOOLEAN,
    "NOTIFYONLY": _BOOLEAN,
    "IGNOREAPPVVERSIONCHECK": _BOOLEAN,
    "SITEREASSIGN": _one_of("TRUE"),
    "DNSSUFFIX": _HOST,
    "FSP": _HOST,
    "SMSDIRECTORYLOOKUP": _one_of("NOWINS", "WINSSECURE"),
    "SMSCONFIGSOURCE": _pattern(r"(?!.*(.).*\1)[RPMU]{1,4}", "letters from R, P, M, U, each once"),
    "PROVISIONTS": _pattern(r"[A-Z0-9]{3}[0-9A-F]{5}", "a task sequence id such as PR100004"),
}
# Names with a reason of their own: the tenant fixes these, or a profile field sets them.
_RESERVED: Final = {
    "AADTENANTID": "fixed by the tenant's settings (AAD_TENANT_ID)",
    "AADTENANTNAME": "fixed by the tenant's settings (AAD_TENANT_NAME)",
    "AADCLIENTAPPID": "fixed by the tenant's settings (AAD_CLIENT_APP_ID)",
    "AADRESOURCEURI": "fixed by the tenant's settings (AAD_RESOURCE_URI)",
    "CCMHOSTNAME": "set with the field ccmHostname",
    "SMSSITECODE": "set with the field siteCode",
    "SMSMP": "set with the field managementPoint",
}


@dataclass(frozen=True, slots=True)
class Overrides:
    """The ccmsetup values a profile sets; None (or no property) keeps the setting's value."""

    ccm_hostname: str | None = None
    site_code: str | None = None
    management_point: str | None = None
    source: str | None = None
    no_crl_check: bool | None = None
    properties: tuple[tuple[str, str], ...] = ()

    def as_json(self) -> dict[str, Any]:
        view: dict[str, Any] = {
            "ccmHostname": self.ccm_hostname,
            "siteCode": self.site_code,
            "managementPoint": self.management_point,
            "source": self.source,
            "noCrlCheck": self.no_crl_check,
        }
        view = {key: value for key, value in view.items() if value is not None}
        if self.properties:
            view["properties"] = dict(self.properties)
        return view

    def serialize(self) -> str:
        return json.dumps(self.as_json(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def deserialize(cls, text: str) -> Overrides:
        """Stored overrides, read back through the same validation they were written with. A
        stored value that no longer passes (a rule tightened since) is the admin's to fix: a
        500 naming the fields, never a command line built from it."""
        errors: dict[str, str] = {}
        overrides = _overrides(json.loads(text) if text else {}, errors)
        if errors:
            raise ConfigurationProblem(
                "A stored install profile no longer validates ("
                + ", ".join(sorted(errors))
                + "); PUT it again with valid values."
            )
        return overrides


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    group_id: str
    priority: int
    overrides: Overrides = field(default_factory=Overrides)
    updated_by: str | None = None
    updated_at: datetime | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "groupId": self.group_id,
            "priority": self.priority,
            **self.overrides.as_json(),
            "updatedBy": self.updated_by,
            "updatedAt": self.updated_at,
        }

    @property
    def rank(self) -> tuple[int, str]:
        """Lower wins: the priority, then the name (ordinal) so that a tie is decided the
        same way on every instance and every rebuild."""
        return (self.priority, self.name)


def check_name(name: str | None) -> str:
    """The profile name of a route, or 400. `default` is the claim when none matched."""
    if not name or not NAME_PATTERN.fullmatch(name) or name.lower() in RESERVED_NAMES:
        raise BadRequest(
            "Invalid profile name.",
            errors={
                "name": "1 to 64 of A-Z a-z 0-9 . _ -, starting with a letter or digit, "
                "not 'default' or 'resolve'"
            },
        )
    return name


def parse_resolve_query(
    device_id: str | None, user_id: str | None
) -> tuple[str | None, str | None]:
    """`deviceId` and `userId` of `GET /api/profiles/resolve` (at least one), or 400."""
    errors: dict[str, str] = {}
    device = parse_guid(device_id) if device_id else None
    user = parse_guid(user_id) if user_id else None
    if device_id and device is None:
        errors["deviceId"] = "the device's deviceId (a GUID)"
    if user_id and user is None:
        errors["userId"] = "the user's object id (a GUID)"
    if not errors and device is None and user is None:
        errors["deviceId"] = "give deviceId, userId or both"
    if errors:
        raise BadRequest("Bad query for resolve: " + ", ".join(errors), errors=errors)
    return device, user


def parse_profile(name: str, body: object) -> Profile:
    """A PUT body as a profile, or one 400 naming every bad or unknown field."""
    if not isinstance(body, dict):
        raise BadRequest("The body must be a JSON object.", errors={"body": "a JSON object"})
    errors: dict[str, str] = {key: "not a profile field" for key in body if key not in BODY_FIELDS}
    group_id = parse_guid(body.get("groupId")) if isinstance(body.get("groupId"), str) else None
    if group_id is None:
        errors["groupId"] = "the Entra group's object id (a GUID)"
    priority = body.get("priority")
    if (
        not isinstance(priority, int)
        or isinstance(priority, bool)
        or not MIN_PRIORITY <= priority <= MAX_PRIORITY
    ):
        errors["priority"] = f"a whole number from {MIN_PRIORITY} to {MAX_PRIORITY} (lower wins)"
    overrides = _overrides(body, errors)
    if errors:
        raise BadRequest("Invalid install profile: " + ", ".join(sorted(errors)), errors=errors)
    assert group_id is not None
    assert isinstance(priority, int)
    return Profile(name, group_id, priority, overrides)


def _overrides(body: Mapping[str, Any], errors: dict[str, str]) -> Overrides:
    values: dict[str, str] = {}
    for key in ("ccmHostname", "siteCode", "managementPoint", "source"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, str) or not value.strip():
            errors[key] = "a non-empty string"
        else:
            values[key] = value.strip()
    reader = value_reader(values)
    checked: dict[str, str | None] = {}
    for key, kind in (
        ("ccmHostname", "ccm_hostname"),
        ("siteCode", "site_code"),
        ("managementPoint", "management_point"),
        ("source", "windows_path"),
    ):
        if key not in values:
            continue
        try:
            checked[key] = getattr(reader, kind)(key)
        except SettingError as error:
            errors[key] = error.expected
    no_crl = body.get("noCrlCheck")
    if no_crl is not None and not isinstance(no_crl, bool):
        errors["noCrlCheck"] = "true or false"
    return Overrides(
        ccm_hostname=checked.get("ccmHostname"),
        site_code=checked.get("siteCode"),
        management_point=checked.get("managementPoint"),
        source=checked.get("source"),
        no_crl_check=no_crl if isinstance(no_crl, bool) else None,
        properties=_properties(body.get("properties"), errors),
    )


def _properties(given: object, errors: dict[str, str]) -> tuple[tuple[str, str], ...]:
    if given is None:
        return ()
    if not isinstance(given, dict):
        errors["properties"] = "an object of ccmsetup.exe property names and values"
        return ()
    properties: dict[str, str] = {}
    for name, value in given.items():
        key = f"properties.{name}"
        canonical = str(name).upper()
        if canonical in _RESERVED:
            errors[key] = _RESERVED[canonical]
            continue
        check = PROPERTY_CHECKS.get(canonical)
        if check is None:
            errors[key] = "not an allowed ccmsetup.exe property (see README, Install profiles)"
            continue
        if isinstance(value, bool) or not isinstance(value, str | int):
            errors[key] = "a string"
            continue
        text = str(value).strip()
        problem = "at most 240 characters" if len(text) > MAX_PROPERTY_LENGTH else check(text)
        if problem:
            errors[key] = problem
        elif canonical in properties:
            errors[key] = "given twice"
        else:
            properties[canonical] = text.upper() if check is not _FOLDER else text
    return tuple(sorted(properties.items()))
