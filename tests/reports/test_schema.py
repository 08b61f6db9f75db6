"""The status report schema: every failing field named, times normalised, one canonical form."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.errors import PayloadTooLarge
from shared.reports import (
    MAX_BODY_BYTES,
    InvalidReport,
    check_size,
    parse_message,
    parse_report,
    parse_report_text,
    queue_message,
)

NOW = datetime(2026, 11, 27, 15, 0, tzinfo=UTC)
USER = {"auth": "user", "oid": "0f8fad5b-d9cb-469f-a165-70867728950e"}


def valid(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "reportId": str(uuid.uuid4()),
        "deviceId": str(uuid.uuid4()),
        "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "hostname": "PC01.contoso.com",
        "stage": "installed",
        "azureAdJoined": True,
        "domainJoined": False,
        "ccmsetupExitCode": 0,
        "clientVersion": "5.00.9128.1000",
        "siteCode": "abc",
        "reportedAt": "2026-11-27T16:30:00+02:00",
    }
    body.update(overrides)
    return body


def test_offsets_are_normalised_to_utc_and_the_canonical_form_is_stable() -> None:
    report = parse_report(valid(), now=NOW)
    assert report.reported_at == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert report.site_code == "ABC"
    canonical = json.loads(report.canonical())
    assert canonical["reportedAt"] == "2026-11-27T14:30:00.000000Z"
    assert parse_report(canonical, now=NOW) == report


def test_every_failing_field_is_named_at_once() -> None:
    body = valid(
        reportId="nope",
        deviceId=42,
        hostname="bad host!",
        stage="done",
        azureAdJoined="yes",
        ccmsetupExitCode=1.5,
        clientVersion="five",
        siteCode="ABCD",
        reportedAt="2026-11-27T15:00:00",
        dsregcmd={"AzureAdJoined": 1},
        extra=1,
    )
    del body["domainJoined"]
    with pytest.raises(InvalidReport) as caught:
        parse_report(body, now=NOW)
    assert set(caught.value.errors) == {
        "reportId",
        "deviceId",
        "hostname",
        "stage",
        "azureAdJoined",
        "domainJoined",
        "ccmsetupExitCode",
        "clientVersion",
        "siteCode",
        "reportedAt",
        "dsregcmd",
        "extra",
    }
    assert "time zone" in caught.value.errors["reportedAt"]


def test_a_time_too_far_in_the_future_is_refused_but_small_skew_is_not() -> None:
    ahead = (NOW + timedelta(minutes=6)).isoformat()
    with pytest.raises(InvalidReport) as caught:
        parse_report(valid(reportedAt=ahead), now=NOW)
    assert "future" in caught.value.errors["reportedAt"]
    parse_report(valid(reportedAt=(NOW + timedelta(minutes=4)).isoformat()), now=NOW)


def test_unsigned_and_signed_exit_codes_are_one_value_and_nulls_are_allowed() -> None:
    unsigned = parse_report(valid(ccmsetupExitCode=0x80070005), now=NOW)
    signed = parse_report(valid(ccmsetupExitCode=-2147024891), now=NOW)
    assert unsigned.ccmsetup_exit_code == signed.ccmsetup_exit_code == -2147024891
    nulls = parse_report(valid(ccmsetupExitCode=None, clientVersion=None, siteCode=None), now=NOW)
    assert (nulls.ccmsetup_exit_code, nulls.client_version, nulls.site_code) == (None, None, None)
    with pytest.raises(InvalidReport):
        parse_report(valid(ccmsetupExitCode=2**32), now=NOW)
    with pytest.raises(InvalidReport):
        parse_report(valid(ccmsetupExitCode=True), now=NOW)


def test_text_that_is_not_a_json_object_is_named_as_the_body() -> None:
    for text in (b"not json", b"[1,2]", b"\xff\xfe"):
        with pytest.raises(InvalidReport) as caught:
            parse_report_text(text, now=NOW)
        assert list(caught.value.errors) == ["/"]


def test_a_dsregcmd_map_too_big_for_a_queue_message_is_refused() -> None:
    huge = {f"Key{i}": "x" * 200 for i in range(100)}
    with pytest.raises(InvalidReport) as caught:
        parse_report(valid(dsregcmd=huge), now=NOW)
    assert list(caught.value.errors) == ["dsregcmd"]


def test_a_declared_length_over_64_kib_is_refused_before_the_body_is_read() -> None:
    with pytest.raises(PayloadTooLarge):
        check_size(str(MAX_BODY_BYTES + 1), b"")
    with pytest.raises(PayloadTooLarge):
        check_size(None, b"x" * (MAX_BODY_BYTES + 1))
    check_size(str(MAX_BODY_BYTES), b"x" * MAX_BODY_BYTES)


def test_thousands_of_unknown_fields_are_named_only_in_part() -> None:
    body = valid(**{f"extra{i}": i for i in range(5000)})
    with pytest.raises(InvalidReport) as caught:
        parse_report(body, now=NOW)
    assert len(caught.value.errors) == 20


@pytest.mark.parametrize(
    ("reported_at", "expected"),
    [
        ("0999-06-01T12:00:00Z", "before 1601"),
        ("1600-12-31T23:59:59.999999Z", "before 1601"),
        ("0001-01-01T00:00:00+01:00", "before 1601"),  # off the calendar once in UTC
        ("9999-12-31T23:59:59-01:00", "future"),
        ("9999-12-31T23:59:59.999999+00:00", "future"),
        ("2026-11-27T15:04:05", "time zone"),
        ("2026-02-30T00:00:00Z", "ISO-8601"),
        ("2026-11-27T24:00:00Z", "ISO-8601"),
        ("tomorrow", "ISO-8601"),
        (20261127, "ISO-8601"),
        (["2026-11-27T15:04:05Z"], "ISO-8601"),
    ],
)
def test_report_times_the_recorder_could_not_store_are_refused(
    reported_at: object, expected: str
) -> None:
    with pytest.raises(InvalidReport) as caught:
        parse_report(valid(reportedAt=reported_at), now=NOW)
    assert list(caught.value.errors) == ["reportedAt"]
    assert expected in caught.value.errors["reportedAt"]


@pytest.mark.parametrize(
    ("reported_at", "canonical"),
    [
        ("1601-01-01T00:00:00Z", "1601-01-01T00:00:00.000000Z"),
        ("1601-01-01T00:59:00+00:59", "1601-01-01T00:00:00.000000Z"),
        ("2026-11-27T00:30:00+01:00", "2026-11-26T23:30:00.000000Z"),
    ],
)
def test_the_earliest_times_keep_four_year_digits_and_read_back(
    reported_at: str, canonical: str
) -> None:
    report = parse_report(valid(reportedAt=reported_at), now=NOW)
    message = queue_message(report, USER)
    assert json.loads(message)["reportedAt"] == canonical
    assert parse_message(message.encode()) == (report, USER)


@pytest.mark.parametrize(
    ("dsregcmd", "field"),
    [
        ({"AzureAdJoined\ud800": "YES"}, "dsregcmd/AzureAdJoined\\ud800"),
        ({"AzureAdJoined": "YES\udfff"}, "dsregcmd/AzureAdJoined"),
        ({"TenantName": "\udc80Contoso"}, "dsregcmd/TenantName"),
    ],
)
def test_lone_surrogates_are_refused_naming_the_field(dsregcmd: object, field: str) -> None:
    with pytest.raises(InvalidReport) as caught:
        parse_report(valid(dsregcmd=dsregcmd), now=NOW)
    assert list(caught.value.errors) == [field]
    assert "surrogate" in caught.value.errors[field]


@pytest.mark.parametrize("value", ["x" * 2049, "YES\x00", "unit\x1fseparator"])
def test_a_dsregcmd_value_too_long_or_with_control_characters_is_refused(value: str) -> None:
    with pytest.raises(InvalidReport) as caught:
        parse_report(valid(dsregcmd={"TenantName": value}), now=NOW)
    assert caught.value.errors == {
        "dsregcmd/TenantName": "value must be at most 2048 printable characters"
    }
    assert parse_report(valid(dsregcmd={"TenantName": "x" * 2048}), now=NOW).dsregcmd


def test_lone_surrogates_in_json_text_are_refused_not_crashed_on() -> None:
    """JSON escapes can carry what UTF-8 cannot: the text the device sends, byte for byte."""
    body = json.dumps(valid(dsregcmd={"Key": "x"})).replace('"x"', '"\\ud83d"').encode()
    with pytest.raises(InvalidReport) as caught:
        parse_report_text(body, now=NOW)
    assert list(caught.value.errors) == ["dsregcmd/Key"]
    unknown = '{"\\ud800x": 1, ' + json.dumps(valid())[1:]
    with pytest.raises(InvalidReport) as caught:
        parse_report_text(unknown.encode(), now=NOW)
    assert list(caught.value.errors) == ["\\ud800x"]
    json.dumps(caught.value.errors, ensure_ascii=False).encode("utf-8")  # a problem can say it


def test_astral_characters_count_as_the_bytes_a_queue_message_holds() -> None:
    """4 UTF-8 bytes each: 5,000 of them fit in 16 KiB of characters but not in 16 KiB of bytes."""
    with pytest.raises(InvalidReport) as caught:
        parse_report(valid(dsregcmd={f"K{i}": "\U0001f600" * 500 for i in range(10)}), now=NOW)
    assert list(caught.value.errors) == ["dsregcmd"]
    fits = parse_report(valid(dsregcmd={"K": "\U0001f600" * 2000}), now=NOW)
    assert parse_message(queue_message(fits, USER).encode()) == (fits, USER)


def test_client_versions_are_ascii_digits() -> None:
    with pytest.raises(InvalidReport) as caught:
        parse_report(valid(clientVersion="\u0665.\u0660"), now=NOW)  # Arabic-Indic 5.0
    assert list(caught.value.errors) == ["clientVersion"]


def test_a_message_that_would_not_read_back_is_refused_before_it_is_queued() -> None:
    """What the POST enqueues the recorder reads: a report built around the validation (a
    surrogate the schema would refuse) cannot become a queue message."""
    report = parse_report(valid(dsregcmd={"Key": "ok"}), now=NOW)
    broken = dataclasses.replace(report, dsregcmd={"Key": "\ud800"})
    with pytest.raises(InvalidReport) as caught:
        queue_message(broken, USER)
    assert list(caught.value.errors) == ["/"]
    early = dataclasses.replace(report, reported_at=datetime(999, 1, 1, tzinfo=UTC))
    with pytest.raises(InvalidReport):
        queue_message(early, USER)
