"""Device status reports: accept (`POST /api/reports`), record (`record_status`), show (`devices`),
summarize (`fleet_overview`, kept by `run_overview_pass`).

The public surface the blueprints use; the modules behind it are private.
"""

from shared.errors import InvalidReport
from shared.reports._diagnosis import CATALOGUE as DIAGNOSES
from shared.reports._diagnosis import (
    TOKEN_NOT_ACCEPTED,
    Diagnosis,
    UserState,
    diagnose,
    needs_user_lookup,
)
from shared.reports._entities import (
    history_entity,
    history_row_key,
    latest_properties,
    report_view,
)
from shared.reports._intake import MAX_BODY_BYTES, accept_report, check_size, validate_report
from shared.reports._message import PROVENANCE_FIELD, parse_message, queue_message
from shared.reports._overview import (
    FRESH_SECONDS,
    INSTALL_CHART_DAYS,
    OVERVIEW_COLUMNS,
    PASS_BUDGET_SECONDS,
    PassResult,
    fleet_overview,
    run_overview_pass,
)
from shared.reports._recorder import RecordOutcome, StatusContention, record_message, record_report
from shared.reports._schema import (
    STAGES,
    StatusReport,
    parse_report,
    parse_report_text,
)
from shared.reports._views import (
    MAX_PAGE_SIZE,
    DeviceFilter,
    DevicePage,
    device_detail,
    list_devices,
    parse_page_size,
    stuck_threshold,
)
from shared.times import format_utc

__all__ = [
    "DIAGNOSES",
    "FRESH_SECONDS",
    "INSTALL_CHART_DAYS",
    "MAX_BODY_BYTES",
    "MAX_PAGE_SIZE",
    "OVERVIEW_COLUMNS",
    "PASS_BUDGET_SECONDS",
    "PROVENANCE_FIELD",
    "STAGES",
    "TOKEN_NOT_ACCEPTED",
    "DeviceFilter",
    "DevicePage",
    "Diagnosis",
    "InvalidReport",
    "PassResult",
    "RecordOutcome",
    "StatusContention",
    "StatusReport",
    "UserState",
    "accept_report",
    "check_size",
    "device_detail",
    "diagnose",
    "fleet_overview",
    "format_utc",
    "history_entity",
    "history_row_key",
    "latest_properties",
    "list_devices",
    "needs_user_lookup",
    "parse_message",
    "parse_page_size",
    "parse_report",
    "parse_report_text",
    "queue_message",
    "record_message",
    "record_report",
    "report_view",
    "run_overview_pass",
    "stuck_threshold",
    "validate_report",
]
