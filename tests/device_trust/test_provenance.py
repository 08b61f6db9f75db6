"""How a report's sender was authenticated travels in the queue message, and only there."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.reports import InvalidReport, parse_message, parse_report, queue_message

REPORT = {
    "reportId": str(uuid.uuid4()),
    "deviceId": str(uuid.uuid4()),
    "tenantId": str(uuid.uuid4()),
    "hostname": "PC01",
    "stage": "installed",
    "azureAdJoined": True,
    "domainJoined": False,
    "ccmsetupExitCode": 0,
    "clientVersion": "5.00.9128.1000",
    "siteCode": "ABC",
    "reportedAt": "2026-11-27T15:04:05Z",
}
THUMBPRINT = "0123456789ABCDEF0123456789ABCDEF01234567"


def test_the_message_carries_the_report_and_its_provenance():
    report = parse_report(REPORT, now=datetime(2026, 11, 28, tzinfo=UTC))
    provenance = {"auth": "device+user", "certThumbprint": THUMBPRINT, "oid": str(uuid.uuid4())}

    parsed, carried = parse_message(queue_message(report, provenance))

    assert parsed == report
    assert carried == provenance


def test_a_message_queued_without_provenance_is_still_a_report():
    parsed, carried = parse_message(json.dumps(REPORT))
    assert parsed.report_id == REPORT["reportId"]
    assert carried is None


@pytest.mark.parametrize(
    "authentication",
    [
        "device",
        {"auth": "root"},
        {"auth": "device", "certThumbprint": "not hex"},
        {"auth": "user", "oid": "someone"},
        {"auth": "device", "admin": True},
    ],
)
def test_malformed_provenance_is_named(authentication: object):
    with pytest.raises(InvalidReport) as caught:
        parse_message(json.dumps(REPORT | {"authentication": authentication}))
    assert list(caught.value.errors) == ["authentication"]


def test_other_unknown_fields_are_still_refused_in_a_message():
    message = REPORT | {"authentication": {"auth": "device"}, "stgae": "installed"}
    with pytest.raises(InvalidReport) as caught:
        parse_message(json.dumps(message))
    assert "stgae" in caught.value.errors
