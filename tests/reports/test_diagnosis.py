"""The failure explainer, one table row per rule, on real `dsregcmd /status` outputs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from client.dsregcmd import parse_dsregcmd
from shared.reports import (
    DIAGNOSES,
    TOKEN_NOT_ACCEPTED,
    InvalidReport,
    UserState,
    diagnose,
    needs_user_lookup,
    parse_report,
)
from tests.reports.helpers import report
from tests.support.settings import TENANT_ID

DATA = Path(__file__).parents[2] / "devtools" / "samples"
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
STUCK_AFTER = timedelta(minutes=120)
USER = "0f8fad5b-d9cb-469f-a165-70867728950e"


def sample(name: str, *edits: tuple[str, str]) -> dict[str, str]:
    """A sample's key-values as the device script sends them, after line edits (old -> new)."""
    text = (DATA / f"dsregcmd_{name}.txt").read_text()
    for old, new in edits:
        assert old in text, old
        text = text.replace(old, new)
    return parse_dsregcmd(text).values


JOINED = sample("entra_joined")
OTHER_TENANT = sample(
    "entra_joined",
    (
        "TenantId : 72f988bf-86f1-41af-91ab-2d7cd011db47",
        "TenantId : 1d2c3b4a-5f6e-4d7c-8b9a-0f1e2d3c4b5a",
    ),
)
NO_CERTIFICATE = sample(
    "entra_joined",
    ("                Thumbprint : 0B6E7C1A4D2F3E5B6A7C8D9E0F1A2B3C4D5E6F70\n", ""),
    (
        " DeviceCertificateValidity : "
        "[ 2026-01-12 09:14:22.000 UTC -- 2036-01-12 09:44:22.000 UTC ]\n",
        "",
    ),
)
EXPIRED_CERTIFICATE = sample(
    "entra_joined",
    (
        "[ 2026-01-12 09:14:22.000 UTC -- 2036-01-12 09:44:22.000 UTC ]",
        "[ 2015-01-12 09:14:22.000 UTC -- 2025-01-12 09:44:22.000 UTC ]",
    ),
)
KEY_CANNOT_SIGN = sample(
    "entra_joined", ("KeySignTest : PASSED", "KeySignTest : FAILED. 0x80090016")
)


def state(
    dsregcmd: dict[str, str],
    *,
    stage: str = "failed",
    exit_code: int | None = None,
    install_error: int | None = None,
    user_id: str | None = None,
    age: timedelta = timedelta(minutes=5),
) -> dict[str, Any]:
    """A device's latest state, built from a report that passes the real schema."""
    body = report(stage=stage, dsregcmd=dsregcmd, ccmsetupExitCode=exit_code, reported_at=NOW - age)
    if install_error is not None:
        body["installErrorCode"] = install_error
    if user_id is not None:
        body["userObjectId"] = user_id
    parsed = parse_report(body, now=NOW)
    return parsed.to_json() | {"dsregcmd": parsed.dsregcmd, "lastReportAt": parsed.reported_at}


ROWS: list[tuple[str, dict[str, Any], UserState | None, str]] = [
    (
        "installed wins over a stale join",
        state(sample("not_joined"), stage="installed"),
        None,
        "installed",
    ),
    ("joined to another tenant", state(OTHER_TENANT, exit_code=6), None, "tenant-mismatch"),
    ("not joined at all", state(sample("not_joined"), exit_code=6), None, "not-joined"),
    (
        "domain joined, hybrid join pending",
        state(sample("hybrid_pending"), stage="installing"),
        None,
        "hybrid-join-pending",
    ),
    (
        "hybrid joined and healthy, installing",
        state(sample("hybrid_joined"), stage="installing"),
        None,
        "in-progress",
    ),
    (
        "device disabled in Entra ID",
        state(sample("device_disabled"), exit_code=6),
        None,
        "device-auth-failed",
    ),
    ("no device certificate", state(NO_CERTIFICATE), None, "device-certificate-missing"),
    ("certificate expired", state(EXPIRED_CERTIFICATE), None, "device-certificate-untrusted"),
    ("device key cannot sign", state(KEY_CANNOT_SIGN), None, "device-key-unusable"),
    (
        "0x87D00231, user not in AadUsers",
        state(JOINED, install_error=0x87D00231, user_id=USER),
        "absent",
        "user-not-discovered",
    ),
    (
        "0x87D00231, user deleted in AadUsers",
        state(JOINED, install_error=TOKEN_NOT_ACCEPTED, user_id=USER),
        "deleted",
        "user-not-discovered",
    ),
    (
        "0x87D00231, user discovered",
        state(JOINED, install_error=0x87D00231, user_id=USER),
        "active",
        "user-token-refused",
    ),
    ("ccmsetup 6", state(JOINED, exit_code=6), None, "ccmsetup-error"),
    ("ccmsetup 7", state(JOINED, stage="installing", exit_code=7), None, "reboot-required"),
    ("ccmsetup 8", state(JOINED, exit_code=8), None, "setup-already-running"),
    ("ccmsetup 9", state(JOINED, exit_code=9), None, "prerequisite-failure"),
    ("ccmsetup 10", state(JOINED, exit_code=10), None, "manifest-hash-failure"),
    ("ccmsetup 0x80070005", state(JOINED, exit_code=0x80070005), None, "ccmsetup-failed"),
    (
        "bundle received 3 h ago",
        state(JOINED, stage="bundle-received", age=timedelta(hours=3)),
        None,
        "stuck-bundle-received",
    ),
    (
        "installing for 3 h",
        state(JOINED, stage="installing", exit_code=0, age=timedelta(hours=3)),
        None,
        "stuck-installing",
    ),
    (
        "installing for 1 h",
        state(JOINED, stage="installing", age=timedelta(hours=1)),
        None,
        "in-progress",
    ),
    ("failed, nothing explains it", state(JOINED, exit_code=0), None, "failed-unexplained"),
    ("no dsregcmd sent, ccmsetup 9", state({}, exit_code=9), None, "prerequisite-failure"),
]


@pytest.mark.parametrize(
    ("device", "user", "expected"),
    [pytest.param(row[1], row[2], row[3], id=row[0]) for row in ROWS],
)
def test_each_rule_explains_its_device(
    device: dict[str, Any], user: UserState | None, expected: str
) -> None:
    diagnosis = diagnose(device, tenant_id=TENANT_ID, now=NOW, stuck_after=STUCK_AFTER, user=user)
    assert diagnosis.code == expected
    assert diagnosis.summary
    assert diagnosis.advice


def test_every_code_is_reachable_and_explained() -> None:
    assert {row[3] for row in ROWS} == set(DIAGNOSES)
    for diagnosis in DIAGNOSES.values():
        assert diagnosis.summary.endswith(".")
        assert diagnosis.advice.endswith(".")


def test_tenant_compare_ignores_case_and_braces() -> None:
    upper = dict(JOINED, TenantId="{72F988BF-86F1-41AF-91AB-2D7CD011DB47}")
    device = state(upper, exit_code=6)
    diagnosis = diagnose(device, tenant_id=TENANT_ID, now=NOW, stuck_after=STUCK_AFTER)
    assert diagnosis.code == "ccmsetup-error"


def test_the_stuck_time_is_the_setting() -> None:
    device = state(JOINED, stage="installing", age=timedelta(minutes=45))
    short = diagnose(device, tenant_id=TENANT_ID, now=NOW, stuck_after=timedelta(minutes=30))
    long = diagnose(device, tenant_id=TENANT_ID, now=NOW, stuck_after=timedelta(minutes=60))
    assert (short.code, long.code) == ("stuck-installing", "in-progress")


def test_only_the_token_error_asks_for_a_user_read() -> None:
    assert needs_user_lookup(state(JOINED, install_error=0x87D00231, user_id=USER)) == USER
    assert needs_user_lookup(state(JOINED, install_error=0x87D00231)) == ""
    assert needs_user_lookup(state(JOINED, install_error=0x80070005, user_id=USER)) is None
    installed = state(JOINED, stage="installed", install_error=0x87D00231, user_id=USER)
    assert needs_user_lookup(installed) is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("userObjectId", "adele@contoso.com"),
        ("installErrorCode", "0x87D00231"),
        ("installErrorCode", 2**33),
    ],
)
def test_new_report_fields_stay_validated(field: str, value: object) -> None:
    body = report()
    body[field] = value
    with pytest.raises(InvalidReport) as raised:
        parse_report(body)
    assert list(raised.value.errors) == [field]


def test_new_report_fields_are_optional_and_round_trip() -> None:
    assert parse_report(report()).to_json().keys().isdisjoint({"userObjectId", "installErrorCode"})
    parsed = parse_report(report(userObjectId=USER.upper(), installErrorCode=0x87D00231))
    assert (parsed.user_object_id, parsed.install_error_code) == (USER, TOKEN_NOT_ACCEPTED)
    assert parse_report(parsed.to_json()) == parsed
