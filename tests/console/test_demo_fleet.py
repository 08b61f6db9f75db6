"""The `make run` demo fleet: every report passes the real schema and the console has each
common failure to explain."""

from __future__ import annotations

import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta

from devtools.demo_fleet import DEMO_DEVICES, demo_reports
from shared.reports import diagnose, parse_report

TENANT_ID = str(uuid.uuid4())  # not the tenant the dsregcmd samples were recorded in


def test_the_demo_fleet_is_valid_and_shows_the_common_failures() -> None:
    now = datetime.now(UTC)
    fleet = demo_reports(TENANT_ID, now)
    assert len(fleet) == DEMO_DEVICES
    assert demo_reports(TENANT_ID, now) == fleet  # deterministic: a re-run adds nothing
    codes: Counter[str] = Counter()
    for body in fleet:
        report = parse_report(body, now=now)
        state = report.to_json() | {"dsregcmd": report.dsregcmd, "lastReportAt": report.reported_at}
        codes[
            diagnose(
                state, tenant_id=TENANT_ID, now=now, stuck_after=timedelta(hours=2), user="absent"
            ).code
        ] += 1
    assert {
        "installed",
        "not-joined",
        "hybrid-join-pending",
        "device-auth-failed",
        "prerequisite-failure",
        "manifest-hash-failure",
        "user-not-discovered",
        "reboot-required",
        "stuck-installing",
        "in-progress",
    } <= set(codes)
    assert "tenant-mismatch" not in codes
