"""How a report becomes rows in `DeviceStatusHistory` and `DeviceStatus`, and back into JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

from shared.ids import inverted_ticks
from shared.reports._diagnosis import DSREGCMD_FACTS
from shared.reports._schema import StatusReport
from shared.times import format_utc

# Report fields copied into both tables, as (JSON name, property name).
_LATEST_FIELDS: Final = (
    ("reportId", "reportId"),
    ("hostname", "hostname"),
    ("stage", "stage"),
    ("azureAdJoined", "azureAdJoined"),
    ("domainJoined", "domainJoined"),
    ("ccmsetupExitCode", "ccmsetupExitCode"),
    ("clientVersion", "clientVersion"),
    ("siteCode", "siteCode"),
    ("userObjectId", "userObjectId"),
    ("installErrorCode", "installErrorCode"),
)


def history_row_key(report: StatusReport) -> str:
    return f"{inverted_ticks(report.reported_at)}_{report.report_id}"


def _report_properties(report: StatusReport) -> dict[str, Any]:
    """The report's fields as Table properties (None is simply not stored)."""
    return {
        "reportId": report.report_id,
        "tenantId": report.tenant_id,
        "deviceId": report.device_id,
        "hostname": report.hostname,
        "stage": report.stage,
        "azureAdJoined": report.azure_ad_joined,
        "domainJoined": report.domain_joined,
        "ccmsetupExitCode": report.ccmsetup_exit_code,
        "clientVersion": report.client_version,
        "siteCode": report.site_code,
        "userObjectId": report.user_object_id,
        "installErrorCode": report.install_error_code,
        "reportedAt": report.reported_at,
        "dsregcmd": json.dumps(report.dsregcmd, ensure_ascii=False) if report.dsregcmd else None,
        "dsregcmdFacts": _facts(report.dsregcmd),
    }


def _facts(dsregcmd: Mapping[str, str]) -> str:
    """Always written ("{}" without dsregcmd), so a row without it was recorded before it."""
    facts = {key: dsregcmd[key] for key in DSREGCMD_FACTS if key in dsregcmd}
    return json.dumps(facts, ensure_ascii=False)


def history_entity(report: StatusReport, *, message_id: str | None) -> dict[str, Any]:
    return {
        "PartitionKey": report.device_id,
        "RowKey": history_row_key(report),
        **_report_properties(report),
        "messageId": message_id,
        "recordedAt": datetime.now(UTC),
        # Set once DeviceStatus has counted this report (see _recorder).
        "counted": False,
    }


def latest_properties(report: StatusReport) -> dict[str, Any]:
    """The `DeviceStatus` columns that always describe the newest report."""
    return _report_properties(report)


def _json_value(value: Any) -> Any:
    return format_utc(value) if isinstance(value, datetime) else value


def report_view(row: Mapping[str, Any], *, with_dsregcmd: bool) -> dict[str, Any]:
    """A history or status row as the report JSON an admin reads (unset fields are null)."""
    view: dict[str, Any] = {"deviceId": row.get("deviceId"), "tenantId": row.get("tenantId")}
    for json_name, prop in _LATEST_FIELDS:
        view[json_name] = _json_value(row.get(prop))
    view["reportedAt"] = _json_value(row.get("reportedAt"))
    if with_dsregcmd:
        raw = row.get("dsregcmd")
        view["dsregcmd"] = json.loads(raw) if isinstance(raw, str) else {}
    return view


def status_view(row: Mapping[str, Any], *, with_dsregcmd: bool) -> dict[str, Any]:
    view = report_view(row, with_dsregcmd=with_dsregcmd)
    view["lastReportAt"] = _json_value(row.get("lastReportAt"))
    view["reportCount"] = row.get("reportCount", 0)
    return view
