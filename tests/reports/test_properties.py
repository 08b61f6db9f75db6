"""A 202 means recorded: every report `POST /api/reports` accepts, the recorder records.

Property-based (hypothesis): reports with hostile values in every field (times across the whole
calendar with offsets, lone UTF-16 surrogates, astral characters, huge maps, wrong JSON types) go
through the POST's own validation; each accepted one is folded by the recorder on the session's
Azurite and read back from `DeviceStatusHistory` and `DeviceStatus`. A refused one must be a
`BadRequest` whose problem can be sent (UTF-8) and names fields. Scale: tests/support/fuzz.py.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from shared.errors import BadRequest
from shared.names import DEVICE_STATUS, DEVICE_STATUS_HISTORY
from shared.reports import (
    RecordOutcome,
    StatusReport,
    history_row_key,
    queue_message,
    record_message,
    report_view,
    validate_report,
)
from shared.storage import Storage
from tests.support.fuzz import fuzz_settings
from tests.support.settings import TENANT_ID

USER = {"auth": "user", "oid": "0f8fad5b-d9cb-469f-a165-70867728950e"}  # how the POST saw it

OFFSETS = st.sampled_from(
    [UTC, timezone(timedelta(hours=14)), timezone(timedelta(hours=-12)), timezone(timedelta(0, 59))]
)
PLAUSIBLE_TIME = st.datetimes(
    min_value=datetime(1601, 1, 1), max_value=datetime(2026, 1, 1), timezones=OFFSETS
)
# Anything the calendar holds: years before 1000, the first and last days with offsets.
ANY_TIME = st.datetimes(min_value=datetime.min, max_value=datetime.max, timezones=OFFSETS)
# Astral characters (4 UTF-8 bytes, 2 UTF-16 units) and lone surrogates (JSON's \uD800 escapes
# carry them; UTF-8 cannot): what made a 202 unrecordable or a 500.
TEXT = st.text(st.one_of(st.characters(), st.characters(min_codepoint=0x10000)), max_size=40)
SURROGATE_TEXT = st.builds(lambda a, s, b: a + s + b, TEXT, st.characters(categories=["Cs"]), TEXT)
LONG_TEXT = st.text(st.characters(min_codepoint=0x10000), min_size=1500, max_size=2100)
DSREGCMD = st.dictionaries(
    st.one_of(st.sampled_from(["AzureAdJoined", "TenantName", "DeviceId"]), TEXT),
    st.one_of(st.sampled_from(["YES", "NO", "Contoso Ltd", ""]), TEXT, LONG_TEXT),
    max_size=12,
)
VALID = st.fixed_dictionaries(
    {
        "tenantId": st.just(TENANT_ID),
        "hostname": st.from_regex(r"[A-Za-z0-9][A-Za-z0-9.-]{0,30}[A-Za-z0-9]", fullmatch=True),
        "stage": st.sampled_from(["bundle-received", "installing", "installed", "failed"]),
        "azureAdJoined": st.booleans(),
        "domainJoined": st.booleans(),
        "ccmsetupExitCode": st.one_of(st.none(), st.integers(-(2**31), 2**32 - 1)),
        "clientVersion": st.sampled_from(["5.00.9128.1000", "5.0.1", None]),
        "siteCode": st.sampled_from(["ABC", "p01", None]),
        "reportedAt": st.one_of(
            PLAUSIBLE_TIME.map(datetime.isoformat),
            PLAUSIBLE_TIME.map(lambda m: m.isoformat(timespec="seconds").replace("+00:00", "Z")),
        ),
    },
    optional={"dsregcmd": DSREGCMD},
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT | SURROGATE_TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
# At most two fields replaced by something hostile, so that about half the reports get through.
HOSTILE = st.dictionaries(
    st.sampled_from(
        [
            "hostname",
            "stage",
            "ccmsetupExitCode",
            "clientVersion",
            "siteCode",
            "reportedAt",
            "dsregcmd",
            "\ud800",
        ]
    ),
    st.one_of(
        ANY_JSON,
        ANY_TIME.map(datetime.isoformat),
        st.sampled_from(["0999-12-31T23:59:59Z", "1601-01-01T00:00:00+00:01", "0001-01-01T00:00Z"]),
        st.dictionaries(st.one_of(TEXT, SURROGATE_TEXT), SURROGATE_TEXT, min_size=1, max_size=3),
        st.dictionaries(SURROGATE_TEXT, TEXT, min_size=1, max_size=3),
    ),
    max_size=2,
)
REPORT = st.builds(
    lambda valid, hostile: {**valid, **hostile}, VALID, st.one_of(st.just({}), HOSTILE)
)


@fuzz_settings(40)
@given(body=REPORT)
async def test_every_report_the_post_accepts_is_recorded(
    storage: Storage, body: dict[str, Any]
) -> None:
    ids = {"reportId": str(uuid.uuid4()), "deviceId": str(uuid.uuid4())}  # fresh rows each time
    wire = json.dumps({**ids, **body}).encode()  # ASCII JSON: surrogates travel as \uXXXX escapes
    report = validated(wire)
    event("accepted" if report else "refused")
    if report is None:
        return
    message = queue_message(report, USER)  # exactly what the POST enqueues
    outcome = await record_message(
        message.encode("utf-8"), message_id=str(uuid.uuid4()), dequeue_count=1, storage=storage
    )
    assert outcome is RecordOutcome.RECORDED
    history = await storage.table(DEVICE_STATUS_HISTORY)
    row = await history.get_entity(report.device_id, history_row_key(report))
    assert row["counted"] is True
    # The view names every optional field (null when the report left it out); to_json omits them.
    view = {k: v for k, v in report_view(row, with_dsregcmd=True).items() if v is not None}
    assert view == {"dsregcmd": {}, **{k: v for k, v in report.to_json().items() if v is not None}}
    assert (row["auth"], row["oid"]) == (USER["auth"], USER["oid"])
    status = await storage.table(DEVICE_STATUS)
    latest = await status.get_entity(report.tenant_id, report.device_id)
    assert (latest["reportId"], latest["reportCount"]) == (report.report_id, 1)


def validated(wire: bytes) -> StatusReport | None:
    """The POST's validation: the report, or None when refused with a problem that can be sent."""
    try:
        return validate_report(wire, caller_tenant_id=TENANT_ID)
    except BadRequest as refused:
        problem = refused
    assert problem.errors  # it names the fields
    json.dumps(problem.body(), ensure_ascii=False).encode("utf-8")  # and can be sent as UTF-8
    return None
