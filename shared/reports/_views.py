"""Admin views over `DeviceStatus` and `DeviceStatusHistory` (function `devices`)."""

from __future__ import annotations

import binascii
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError

from shared.b64url import b64url_decode, b64url_encode
from shared.errors import BadRequest
from shared.names import DEVICE_STATUS, DEVICE_STATUS_HISTORY
from shared.reports._entities import report_view, status_view
from shared.reports._schema import STAGES
from shared.storage import get_storage, translate_errors

HISTORY_SHOWN: Final = 20
DEFAULT_PAGE_SIZE: Final = 100
MAX_PAGE_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class DevicePage:
    devices: list[dict[str, Any]]
    continuation: str | None


async def device_detail(tenant_id: str, device_id: str) -> dict[str, Any] | None:
    """The device's latest state and its newest reports (newest first), or None if unknown."""
    storage = get_storage()
    status = await storage.table(DEVICE_STATUS)
    history = await storage.table(DEVICE_STATUS_HISTORY)
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
            recent.append(report_view(item, with_dsregcmd=False))
            if len(recent) == HISTORY_SHOWN:
                break
    return {**status_view(row, with_dsregcmd=True), "history": recent}


def parse_stage(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if value not in STAGES:
        raise BadRequest("Unknown stage.", errors={"state": "must be one of " + ", ".join(STAGES)})
    return value


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
    tenant_id: str, *, stage: str | None, page_size: int, continuation: str | None
) -> DevicePage:
    """One page of the tenant's devices (optionally in one stage) and the token for the next."""
    table = await get_storage().table(DEVICE_STATUS)
    query = "PartitionKey eq @tenant" + (" and stage eq @stage" if stage else "")
    parameters = {"tenant": tenant_id} | ({"stage": stage} if stage else {})
    token = _decode_continuation(continuation)
    async with translate_errors():
        pages = table.query_entities(
            query, parameters=parameters, results_per_page=page_size
        ).by_page(continuation_token=token)  # type: ignore[arg-type]
        devices: list[dict[str, Any]] = []
        async for page in pages:
            devices = [status_view(row, with_dsregcmd=False) async for row in page]
            break
        next_token = pages.continuation_token  # type: ignore[attr-defined]
    return DevicePage(devices, _encode_continuation(next_token))


async def stage_counts(tenant_id: str) -> dict[str, int]:
    """How many of the tenant's devices are in each stage (every stage listed, zero included)."""
    table = await get_storage().table(DEVICE_STATUS)
    counts: Counter[str] = Counter()
    async with translate_errors():
        rows = table.query_entities(
            "PartitionKey eq @tenant", parameters={"tenant": tenant_id}, select=["stage"]
        )
        async for row in rows:
            counts[str(row.get("stage"))] += 1
    return {stage: counts.get(stage, 0) for stage in STAGES}


def _encode_continuation(token: object) -> str | None:
    if not token:
        return None
    raw = json.dumps(token, separators=(",", ":")).encode()
    return b64url_encode(raw)


def _decode_continuation(value: str | None) -> dict[str, str] | None:
    if value is None or value == "":
        return None
    bad = BadRequest(
        "Bad continuation token.",
        errors={"continuation": "must be a token from a previous page's 'continuation'"},
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
