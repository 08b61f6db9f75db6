"""Admin views over `DeviceStatus` and `DeviceStatusHistory` (function `devices`).

Every device in an answer carries its `diagnosis` (see `_diagnosis`). Lists page one way: an
opaque `next` token (the table's continuation, base64url JSON) passed back as `?next=`; the
older `continuation` name is still accepted and answered. A filter on `diagnosis` is applied to
each table page as it is read, so a page may hold fewer than `pageSize` devices while `next` is
set; at most `MAX_EXAMINED` rows are read per request.
"""

from __future__ import annotations

import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.b64url import b64url_decode, b64url_encode
from shared.errors import BadRequest
from shared.names import AAD_USERS, BUNDLE_ISSUANCE, DEVICE_STATUS, DEVICE_STATUS_HISTORY
from shared.reports._diagnosis import CATALOGUE, UserState, diagnose, needs_user_lookup
from shared.reports._entities import report_view, status_view
from shared.reports._schema import STAGES
from shared.settings import get_settings
from shared.storage import get_storage, translate_errors
from shared.times import format_utc, parse_utc

HISTORY_SHOWN: Final = 20
ISSUANCES_SHOWN: Final = 20
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000
# A rare diagnosis in a large fleet: stop after this many rows and hand back `next`.
MAX_EXAMINED: Final = 5000


@dataclass(frozen=True, slots=True)
class DevicePage:
    devices: list[dict[str, Any]]
    continuation: str | None


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """The list's filters; each is named after the field it filters."""

    stage: str | None = None
    diagnosis: str | None = None
    last_report_before: datetime | None = None
    last_report_after: datetime | None = None

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> DeviceFilter:
        """`stage` (`state` is its older name), `diagnosis`, `lastReportAtBefore`/`After`."""
        errors: dict[str, str] = {}
        stage_name = "stage" if params.get("stage") else "state"
        stage = params.get(stage_name) or None
        if stage is not None and stage not in STAGES:
            errors[stage_name] = "must be one of " + ", ".join(STAGES)
        diagnosis = params.get("diagnosis") or None
        if diagnosis is not None and diagnosis not in CATALOGUE:
            errors["diagnosis"] = "must be one of " + ", ".join(CATALOGUE)
        times: dict[str, datetime | None] = {}
        for name in ("lastReportAtBefore", "lastReportAtAfter"):
            value = params.get(name) or None
            times[name] = parse_utc(value) if value else None
            if value and times[name] is None:
                errors[name] = "must be an RFC 3339 time such as 2026-11-27T15:04:05Z"
        if errors:
            raise BadRequest("Bad device filter.", errors=errors)
        return cls(stage, diagnosis, times["lastReportAtBefore"], times["lastReportAtAfter"])

    def query(self, tenant_id: str) -> tuple[str, dict[str, Any]]:
        clauses = ["PartitionKey eq @tenant"]
        parameters: dict[str, Any] = {"tenant": tenant_id}
        if self.stage:
            clauses.append("stage eq @stage")
            parameters["stage"] = self.stage
        elif self.diagnosis == "installed":
            clauses.append("stage eq 'installed'")
        elif self.diagnosis:
            clauses.append("stage ne 'installed'")
        if self.last_report_before:
            clauses.append("lastReportAt lt @before")
            parameters["before"] = self.last_report_before
        if self.last_report_after:
            clauses.append("lastReportAt ge @after")
            parameters["after"] = self.last_report_after
        return " and ".join(clauses), parameters


def stuck_threshold() -> timedelta:
    """How long a device may stay at `bundle-received` or `installing` (DEVICE_STUCK_MINUTES)."""
    return timedelta(minutes=get_settings().device_stuck_minutes)


class _Explainer:
    """Diagnoses rows for one request (or one page of the overview's pass): one clock, one
    setting read, each user read once."""

    def __init__(
        self,
        tenant_id: str,
        users: TableClient,
        *,
        now: datetime | None = None,
        stuck_after: timedelta | None = None,
    ) -> None:
        self._tenant_id = tenant_id
        self._users = users
        self._now = now or datetime.now(UTC)
        self._stuck_after = stuck_after or stuck_threshold()
        self._user_states: dict[str, UserState] = {}

    async def explain(self, row: Mapping[str, Any]) -> dict[str, str]:
        state = dict(row)
        state["dsregcmd"] = _dsregcmd(row)
        state["lastReportAt"] = _aware(row.get("lastReportAt"))
        user_id = needs_user_lookup(state)
        user = await self._user_state(user_id) if user_id else None
        diagnosis = diagnose(
            state,
            tenant_id=self._tenant_id,
            now=self._now,
            stuck_after=self._stuck_after,
            user=user,
        )
        return diagnosis.to_json()

    async def _user_state(self, user_id: str) -> UserState:
        """A point read of `AadUsers` (PartitionKey tenant, RowKey user object id)."""
        if user_id not in self._user_states:
            try:
                row = await self._users.get_entity(self._tenant_id, user_id, select=["isDeleted"])
                self._user_states[user_id] = "deleted" if row.get("isDeleted") else "active"
            except ResourceNotFoundError:
                self._user_states[user_id] = "absent"
        return self._user_states[user_id]


async def _explainer(tenant_id: str) -> _Explainer:
    return _Explainer(tenant_id, await get_storage().table(AAD_USERS))


def _dsregcmd(row: Mapping[str, Any]) -> dict[str, str]:
    """What the explainer reads of dsregcmd: the facts column, else (older rows) the raw one."""
    raw = row.get("dsregcmdFacts")
    if not isinstance(raw, str):
        raw = row.get("dsregcmd")
    if not isinstance(raw, str):
        return {}
    value = json.loads(raw)
    return value if isinstance(value, dict) else {}


def _aware(value: object) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


async def device_detail(tenant_id: str, device_id: str) -> dict[str, Any] | None:
    """The device's latest state with its diagnosis, its newest reports (newest first) and a
    timeline of reports and bundle issuances; None if no report was recorded."""
    storage = get_storage()
    status = await storage.table(DEVICE_STATUS)
    history = await storage.table(DEVICE_STATUS_HISTORY)
    explainer = await _explainer(tenant_id)
    async with translate_errors():
        try:
            row = await status.get_entity(tenant_id, device_id)
        except ResourceNotFoundError:
            return None
        # RowKeys start with inverted time, so the partition's first rows are the newest.
        rows = history.query_entities(
            "PartitionKey eq @device and tenantId eq @tenant",
            parameters={"device": device_id, "tenant": tenant_id},
            results_per_page=HISTORY_SHOWN,
        )
        recent: list[dict[str, Any]] = []
        async for item in rows:
            recent.append(report_view(item, with_dsregcmd=False) | _auth_view(item))
            if len(recent) == HISTORY_SHOWN:
                break
        issuances = await _issuances(tenant_id, device_id)
        diagnosis = await explainer.explain(row)
    timeline = [{"kind": "report", "at": item["reportedAt"], **item} for item in recent] + [
        {"kind": "bundle", "at": item["issued"], **item} for item in issuances
    ]
    timeline.sort(key=lambda event: str(event["at"]), reverse=True)
    return {
        **status_view(row, with_dsregcmd=True),
        "diagnosis": diagnosis,
        "history": recent,
        "timeline": timeline,
    }


def _auth_view(row: Mapping[str, Any]) -> dict[str, Any]:
    """How a report or bundle request was authenticated, where the row records it."""
    return {
        "auth": row.get("auth"),
        "certThumbprint": row.get("certThumbprint"),
        "userObjectId": row.get("oid") or row.get("userObjectId"),
    }


async def _issuances(tenant_id: str, device_id: str) -> list[dict[str, Any]]:
    """The device's newest bundle issuances. `BundleIssuance` is keyed by jti, so this is a
    filtered read of the tenant partition, bounded to `ISSUANCES_SHOWN` rows."""
    table = await get_storage().table(BUNDLE_ISSUANCE)
    found: list[dict[str, Any]] = []
    rows = table.query_entities(
        "PartitionKey eq @tenant and sub eq @device",
        parameters={"tenant": tenant_id, "device": device_id},
        results_per_page=ISSUANCES_SHOWN,
    )
    async for row in rows:
        issued, expires = _aware(row.get("issued")), _aware(row.get("expires"))
        found.append(
            {
                "jti": row["RowKey"],
                "issued": format_utc(issued) if issued else None,
                "expires": format_utc(expires) if expires else None,
                "profile": row.get("profile"),
                **_auth_view(row),
                # Bundles issued before device proofs existed were always for a user's token.
                "auth": row.get("auth") or ("user" if row.get("oid") else None),
            }
        )
        if len(found) == ISSUANCES_SHOWN:
            break
    found.sort(key=lambda item: str(item["issued"]), reverse=True)
    return found


def parse_page_size(value: str | None) -> int:
    if value is None or value == "":
        return DEFAULT_PAGE_SIZE
    if not value.isdigit() or not 1 <= int(value) <= MAX_PAGE_SIZE:
        raise BadRequest(
            "Bad page size.",
            errors={"pageSize": f"must be a whole number from 1 to {MAX_PAGE_SIZE}"},
        )
    return int(value)


async def list_devices(
    tenant_id: str,
    where: DeviceFilter,
    *,
    page_size: int,
    continuation: str | None,
    paging_param: str = "next",
) -> DevicePage:
    """One page of the tenant's devices that pass the filter, and the token for the next."""
    table = await get_storage().table(DEVICE_STATUS)
    query, parameters = where.query(tenant_id)
    token = _decode_continuation(continuation, paging_param)
    explainer = await _explainer(tenant_id)
    devices: list[dict[str, Any]] = []
    examined = 0
    async with translate_errors():
        while len(devices) < page_size and examined < MAX_EXAMINED:
            # Ask only for what the page still lacks, so no row is read and then dropped.
            pages = table.query_entities(
                query, parameters=parameters, results_per_page=page_size - len(devices)
            ).by_page(continuation_token=token)  # type: ignore[arg-type]
            async for page in pages:
                async for row in page:
                    examined += 1
                    diagnosis = await explainer.explain(row)
                    if where.diagnosis and diagnosis["code"] != where.diagnosis:
                        continue
                    devices.append(status_view(row, with_dsregcmd=False) | {"diagnosis": diagnosis})
                break
            token = pages.continuation_token  # type: ignore[attr-defined]
            if not token:
                break
    return DevicePage(devices, _encode_continuation(token))


def _encode_continuation(token: object) -> str | None:
    if not token:
        return None
    raw = json.dumps(token, separators=(",", ":")).encode()
    return b64url_encode(raw)


def _decode_continuation(value: str | None, field: str) -> dict[str, str] | None:
    if value is None or value == "":
        return None
    bad = BadRequest(
        "Bad continuation token.",
        errors={field: "must be the 'next' token of a previous page"},
    )
    try:
        token = json.loads(b64url_decode(value))
    except (ValueError, binascii.Error):
        raise bad from None
    if (
        not isinstance(token, dict)
        or not token
        or not all(
            k in ("PartitionKey", "RowKey") and isinstance(v, str | None) for k, v in token.items()
        )
    ):
        raise bad
    return token
