"""Admin views (`devices`) through the development host, on rows the queue trigger recorded."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devtools.fakes.entra import EntraIssuer
from shared.names import AAD_USERS, DEVICE_STATUS
from tests.reports.helpers import (
    Service,
    enqueue,
    fresh_overview,
    http,
    report,
    rows,
    wait_for,
)
from tests.support.settings import TENANT_ID

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
    # 0x87D00231 for a user discovery never saw, and for one it did (a point read tells them apart).
    known_user, unknown_user = str(uuid.uuid4()), str(uuid.uuid4())
    users = await service.storage.table(AAD_USERS)
    await users.upsert_entity(
        {
            "PartitionKey": TENANT_ID,
            "RowKey": known_user,
            "displayName": "Adele",
            "isDeleted": False,
        }
    )
    token_errors = {
        user: report(
            stage="failed", reported_at=now, installErrorCode=0x87D00231, userObjectId=user
        )
        for user in (known_user, unknown_user)
    }
    for body in token_errors.values():
        by_stage["failed"].add(body["deviceId"])
    bodies += token_errors.values()
    await enqueue(service.storage, [json.dumps(b) for b in [*bodies, *history]])

    async def all_counted() -> bool:
        found = await rows(service.storage, DEVICE_STATUS)
        return bool(sum(row["reportCount"] for row in found) == len(bodies) + len(history))

    await wait_for(all_counted, within=60, what="every report recorded")
    # A row as written before dsregcmdFacts existed: the overview reads its raw dsregcmd.
    legacy = str(uuid.uuid4())
    status = await service.storage.table(DEVICE_STATUS)
    await status.create_entity(
        {
            "PartitionKey": TENANT_ID,
            "RowKey": legacy,
            "deviceId": legacy,
            "tenantId": TENANT_ID,
            "stage": "failed",
            "ccmsetupExitCode": 6,
            "reportedAt": now,
            "lastReportAt": now,
            "reportCount": 1,
            "dsregcmd": json.dumps({"AzureAdJoined": "NO", "DomainJoined": "NO"}),
        }
    )
    by_stage["failed"].add(legacy)
    return {
        "by_stage": by_stage,
        "busy": busy,
        "history": history,
        "not_discovered": token_errors[unknown_user]["deviceId"],
        "refused": token_errors[known_user]["deviceId"],
    }


def get(service: Service, path: str, token: str | None = None) -> Any:
    return http("GET", service.url(path), token=token or service.admin_token())


async def test_paging_through_failed_devices_sees_each_once(
    service: Service, recorded: dict[str, Any]
) -> None:
    seen: list[str] = []
    token: str | None = ""
    pages = 0
    while token is not None:
        answer = get(service, f"/api/devices?stage=failed&pageSize=5&next={token}")
        assert answer.status == 200, answer.body
        body = answer.json()
        assert len(body["devices"]) <= 5
        assert all(device["stage"] == "failed" for device in body["devices"])
        assert all(device["diagnosis"]["advice"] for device in body["devices"])
        seen += [device["deviceId"] for device in body["devices"]]
        token = body["next"]
        assert token == body["continuation"]
        pages += 1
        assert pages < 10
    assert pages >= 3
    assert sorted(seen) == sorted(recorded["by_stage"]["failed"])


async def test_the_older_state_and_continuation_names_still_page(
    service: Service, recorded: dict[str, Any]
) -> None:
    first = get(service, "/api/devices?state=failed&pageSize=10").json()
    second = get(service, f"/api/devices?state=failed&pageSize=10&continuation={first['next']}")
    ids = [d["deviceId"] for d in first["devices"] + second.json()["devices"]]
    assert sorted(ids) == sorted(recorded["by_stage"]["failed"])


async def test_diagnosis_filter_and_the_user_cross_check(
    service: Service, recorded: dict[str, Any]
) -> None:
    answer = get(service, "/api/devices?diagnosis=user-not-discovered&pageSize=3")
    assert answer.status == 200, answer.body
    assert [d["deviceId"] for d in answer.json()["devices"]] == [recorded["not_discovered"]]
    detail = get(service, f"/api/devices/{recorded['refused']}").json()
    assert detail["diagnosis"]["code"] == "user-token-refused"
    assert detail["installErrorCode"] == 0x87D00231 - 2**32


async def test_last_report_filter_narrows_by_time(
    service: Service, recorded: dict[str, Any]
) -> None:
    cut = (datetime.now(UTC) - timedelta(minutes=45)).strftime("%Y-%m-%dT%H:%M:%SZ")
    older = get(service, f"/api/devices?lastReportAtBefore={cut}&pageSize=1000").json()
    newer = get(service, f"/api/devices?lastReportAtAfter={cut}&pageSize=1000").json()
    newer_ids = {d["deviceId"] for d in newer["devices"]}
    assert newer_ids == {recorded["busy"]}
    assert recorded["busy"] not in {d["deviceId"] for d in older["devices"]}


async def test_overview_counts_match_the_list(service: Service, recorded: dict[str, Any]) -> None:
    overview = await fresh_overview(service)
    expected = {stage: len(ids) for stage, ids in recorded["by_stage"].items()}
    assert overview["counts"] == expected
    assert sum(overview["diagnoses"].values()) == overview["total"] == sum(expected.values())
    assert overview["diagnoses"]["installed"] == expected["installed"]
    assert overview["diagnoses"]["user-not-discovered"] == 1
    assert overview["diagnoses"]["not-joined"] == 1  # the row without dsregcmdFacts
    assert len(overview["installsByDay"]) == 30
    assert sum(day["count"] for day in overview["installsByDay"]) == expected["installed"]


async def test_counts_by_stage(service: Service, recorded: dict[str, Any]) -> None:
    overview = await fresh_overview(service)
    answer = get(service, "/api/devices?summary=stage")
    assert answer.status == 200
    expected = {stage: len(ids) for stage, ids in recorded["by_stage"].items()}
    body = answer.json()
    assert body == {
        "counts": expected,
        "total": sum(expected.values()),
        "asOf": overview["asOf"],
        "refreshing": False,
    }


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
    assert body["diagnosis"]["code"] == "installed"
    assert [e["kind"] for e in body["timeline"]] == ["report"] * 20
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
        ("/api/devices?next=WzFd", 400, "next"),
        ("/api/devices?stage=done", 400, "stage"),
        ("/api/devices?diagnosis=sad", 400, "diagnosis"),
        ("/api/devices?lastReportAtBefore=yesterday", 400, "lastReportAtBefore"),
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


# A fixed device id: parallel workers must collect the same test ids (none has reported).
@pytest.mark.parametrize(
    "path", ["/api/devices?summary=stage", "/api/devices/3f2c1a9e-7b64-4d1e-9c0a-5e8f7d6b4a21"]
)
async def test_app_only_token_with_the_admin_role_is_refused(
    service: Service, entra_issuer: EntraIssuer, path: str
) -> None:
    # An application's own token (client credentials): the role, but no `scp`, no signed-in admin.
    app_only = entra_issuer.mint_access_token(roles=["Bootstrap.Admin"], scp=None)
    answer = get(service, path, token=app_only)
    assert answer.status == 403, answer.body
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "app-only" in answer.json()["detail"]
