"""Device status reports: accept (`POST /api/reports`), record (`record_status`), show (`devices`).

The public surface the blueprints use; the modules behind it are private.
"""

from shared.reports._intake import MAX_BODY_BYTES, accept_report, check_size, validate_report
from shared.reports._message import PROVENANCE_FIELD, parse_message, queue_message
from shared.reports._recorder import Outcome, StatusContention, record_message, record_report
from shared.reports._schema import (
    STAGES,
    InvalidReport,
    StatusReport,
    format_utc,
    parse_report,
    parse_report_text,
)
from shared.reports._views import (
    DevicePage,
    device_detail,
    list_devices,
    parse_page_size,
    parse_stage,
    stage_counts,
)

__all__ = [
    "MAX_BODY_BYTES",
    "PROVENANCE_FIELD",
    "STAGES",
    "DevicePage",
    "InvalidReport",
    "Outcome",
    "StatusContention",
    "StatusReport",
    "accept_report",
    "check_size",
    "device_detail",
    "format_utc",
    "list_devices",
    "parse_message",
    "parse_page_size",
    "parse_report",
    "parse_report_text",
    "parse_stage",
    "queue_message",
    "record_message",
    "record_report",
    "stage_counts",
    "validate_report",
]
