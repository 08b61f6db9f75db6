"""Admin views (`devices`) through the development host, on rows the queue trigger recorded."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.names import DEVICE_STATUS
from tests.fakes.entra import EntraIssuer
from tests.reports.helpers import Service, enqueue, http, report, rows, wait_for

STAGE_DEVICES = {"failed": 12, "installed": 5, "installing": 4, "bundle-received": 3}
HISTORY_DEVICE_REPORTS = 25


@pytest.fixture(scope="module")
async def recorded(service: Service) -> dict[str, Any]:
    """Devices in known stages, plus one device with 25 reports, recorded by the host."""
    now = datetime.now(UTC) - timedelta(hours=1)
    by_stage: dict[str, set[str]] = {stage: set() for stage in STAGE_DEVICES}
    bodies = []
    for stage, count in STAGE_DEVICES.items():
        for _ in range(count):
            body = report(stage=stage, reported_at=now)
            by_stage[stage].add(body["deviceId"])
            bodies.append(body)
    busy = str(uuid.uuid4())
    history = [
        report(device_id=busy, reported_at=now + timedelta(minutes=i), stage="installing")
        for i in range(HISTORY_DEVICE_REPORTS)
    ]
    history[-1]["stage"] = "installed"
    by_stage["installed"].add(busy)
    await enqueue(service.storage, [json.dumps(b) for b in [*bodies, *history]])

    async def all_counted() -> bool:
        found = await rows(service.storage, DEVICE_STATUS)
        return bool(sum(row["reportCount"] for row in found) == len(bodies) + len(history))

    await wait_for(all_counted, within=60, what="every report recorded")
    return {"by_stage": by_stage, "busy": busy, "history": history}


def get(service: Service, path: str, token: str | None = None) -> Any:
    return http("GET", service.url(path), token=token or service.admin_token())


async def test_paging_through_failed_devices_sees_each_once(
    service: Service, recorded: dict[str, Any]
) -> None:
    seen: list[str] = []
    path: str | None = "/api/devices?state=failed&pageSize=5"
    pages = 0
    while path is not None:
        answer = get(service, path)
        assert answer.status == 200, answer.body
        body = answer.json()
        assert len(body["devices"]) <= 5
        assert all(device["stage"] == "failed" for device in body["devices"])
        seen += [device["deviceId"] for device in body["devices"]]
        path = body["next"]
        assert (path is None) == (body["continuation"] is None)
        pages += 1
        assert pages < 10
    assert pages >= 3
    assert sorted(seen) == sorted(recorded["by_stage"]["failed"])


async def test_counts_by_stage(service: Service, recorded: dict[str, Any]) -> None:
    answer = get(service, "/api/devices?summary=stage")
    assert answer.status == 200
    expected = {stage: len(ids) for stage, ids in recorded["by_stage"].items()}
    assert answer.json() == {"counts": expected, "total": sum(expected.values())}


async def test_one_device_shows_latest_state_and_newest_history_first(
    service: Service, recorded: dict[str, Any]
) -> None:
    answer = get(service, f"/api/devices/{recorded['busy'].upper()}")
    assert answer.status == 200
    body = answer.json()
    newest = recorded["history"][-1]
    assert body["reportId"] == newest["reportId"]
    assert body["stage"] == "installed"
    assert body["reportCount"] == HISTORY_DEVICE_REPORTS
    assert body["lastReportAt"] == newest["reportedAt"]
    assert body["dsregcmd"] == newest["dsregcmd"]
    shown = [item["reportId"] for item in body["history"]]
    assert shown == [b["reportId"] for b in reversed(recorded["history"])][:20]


@pytest.mark.parametrize(
    ("path", "status", "field"),
    [
        ("/api/devices/0f0e0d0c-0b0a-4909-8807-060504030201", 404, None),
        ("/api/devices/not-a-guid", 400, "deviceId"),
        ("/api/devices?state=done", 400, "state"),
        ("/api/devices?pageSize=0", 400, "pageSize"),
        ("/api/devices?continuation=%%%", 400, "continuation"),
        ("/api/devices?continuation=WzFd", 400, "continuation"),
        ("/api/devices?summary=site", 400, "summary"),
    ],
)
async def test_bad_requests_name_the_parameter(
    service: Service, path: str, status: int, field: str | None
) -> None:
    answer = get(service, path)
    assert answer.status == status, answer.body
    assert answer.headers["content-type"].startswith("application/problem+json")
    if field is not None:
        assert [error["field"] for error in answer.json()["errors"]] == [field]


async def test_admin_role_is_required(service: Service, entra_issuer: EntraIssuer) -> None:
    assert http("GET", service.url("/api/devices")).status == 401
    device_token = entra_issuer.mint_access_token()
    answer = get(service, "/api/devices?summary=stage", token=device_token)
    assert answer.status == 403
    assert "Bootstrap.Admin" in answer.json()["detail"]


@pytest.mark.parametrize("path", ["/api/devices?summary=stage", f"/api/devices/{uuid.uuid4()}"])
async def test_app_only_token_with_the_admin_role_is_refused(
    service: Service, entra_issuer: EntraIssuer, path: str
) -> None:
    # An application's own token (client credentials): the role, but no `scp`, no signed-in admin.
    app_only = entra_issuer.mint_access_token(roles=["Bootstrap.Admin"], scp=None)
    answer = get(service, path, token=app_only)
    assert answer.status == 403, answer.body
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "app-only" in answer.json()["detail"]
