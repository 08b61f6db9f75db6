"""`POST /api/reports` through the development host: validation, limits, tokens, the queue."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from devtools.fakes.entra import EntraIssuer
from shared.names import DEVICE_STATUS, DEVICE_STATUS_HISTORY
from tests.reports.helpers import (
    Response,
    Service,
    http,
    report,
    rows,
    service_on_own_azurite,
    wait_for,
)
from tests.support.devhost import REPO_ROOT
from tests.support.settings import TENANT_ID

DATA = REPO_ROOT / "devtools" / "samples"


DEVICE_TOKEN = object()


def post(service: Service, body: bytes, *, token: object = DEVICE_TOKEN) -> Response:
    """POST a report; by default with a fresh valid device token."""
    bearer = service.device_token() if token is DEVICE_TOKEN else token
    assert bearer is None or isinstance(bearer, str)
    return http("POST", service.url("/api/reports"), token=bearer, body=body)


def encoded(body: dict[str, object]) -> bytes:
    return json.dumps(body).encode()


async def test_accepted_report_is_enqueued_and_recorded(service: Service) -> None:
    sent = report(reportedAt="2026-11-27T16:30:00+02:00", siteCode="abc")
    answer = post(service, encoded(sent))
    assert answer.status == 202, answer.body
    assert answer.json() == {"reportId": sent["reportId"]}
    # The host's base64 queue trigger decoded the message and recorded the canonical report.
    history = await wait_for(
        lambda: rows(service.storage, DEVICE_STATUS_HISTORY, "reportId eq @r", r=sent["reportId"]),
        within=30,
        what="the history row",
    )
    assert len(history) == 1
    row = history[0]
    assert row["PartitionKey"] == sent["deviceId"]
    assert row["RowKey"].endswith("_" + sent["reportId"])
    assert row["reportedAt"] == datetime(2026, 11, 27, 14, 30, tzinfo=UTC)
    assert row["siteCode"] == "ABC"
    assert json.loads(row["dsregcmd"]) == sent["dsregcmd"]
    assert row["auth"] == "user"
    assert uuid.UUID(row["oid"])
    assert "certThumbprint" not in row
    status = await rows(
        service.storage,
        DEVICE_STATUS,
        "PartitionKey eq @t and RowKey eq @d",
        t=TENANT_ID,
        d=sent["deviceId"],
    )
    assert [(s["reportCount"], s["stage"], s["reportId"], s["auth"]) for s in status] == [
        (1, "installed", sent["reportId"], "user")
    ]


async def test_a_body_cannot_claim_how_its_sender_was_authenticated(service: Service) -> None:
    forged = report(authentication={"auth": "device", "certThumbprint": "AB" * 20})
    answer = post(service, encoded(forged))
    assert answer.status == 400
    assert answer.json()["errors"] == [
        {"field": "authentication", "detail": "is not a field of the status report"}
    ]


async def test_every_bad_field_is_named_in_one_problem(service: Service) -> None:
    body = report(stage="done", deviceId="not-a-guid", reportedAt="2026-11-27T10:00:00")
    del body["hostname"]
    body["azureAdJoined"] = "YES"
    answer = post(service, encoded(body))
    assert answer.status == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["status"] == 400
    named = {error["field"]: error["detail"] for error in problem["errors"]}
    assert set(named) == {"stage", "deviceId", "reportedAt", "hostname", "azureAdJoined"}
    assert "time zone" in named["reportedAt"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "/"),
        (b"[]", "/"),
        (encoded(report(ccmsetupExitCode="0")), "ccmsetupExitCode"),
        (encoded(report(clientVersion=5)), "clientVersion"),
        (encoded(report(siteCode="ABCD")), "siteCode"),
        (encoded(report(reportId=str(uuid.uuid4()).upper()[:-1])), "reportId"),
        (encoded(report(tenantId="contoso")), "tenantId"),
        (encoded(report(domainJoined=None)), "domainJoined"),
        (encoded(report(dsregcmd=["AzureAdJoined"])), "dsregcmd"),
        (
            encoded(report(reportedAt=(datetime.now(UTC) + timedelta(hours=1)).isoformat())),
            "reportedAt",
        ),
        (encoded({**report(), "stgae": "installed"}), "stgae"),
        # Each of these was a 202 that the recorder refused, or a 500.
        (encoded(report(reportedAt="0999-06-01T12:00:00Z")), "reportedAt"),
        (encoded(report(reportedAt="0001-01-01T00:00:00+01:00")), "reportedAt"),
        (encoded(report(reportedAt="9999-12-31T23:59:59-01:00")), "reportedAt"),
        (encoded(report(dsregcmd={"DeviceId": "\ud800"})), "dsregcmd/DeviceId"),
        (encoded(report(dsregcmd={"\udc00": "YES"})), "dsregcmd/\\udc00"),
    ],
)
async def test_a_bad_field_is_named(service: Service, body: bytes, field: str) -> None:
    answer = post(service, body)
    assert answer.status == 400, answer.body
    assert [error["field"] for error in answer.json()["errors"]] == [field]


async def test_a_compressed_body_is_415(service: Service) -> None:
    """The host passes a body through as sent: a coding the service does not undo is refused."""
    answer = http(
        "POST",
        service.url("/api/reports"),
        token=service.device_token(),
        body=encoded(report()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
    )
    assert answer.status == 415
    assert answer.headers["accept-encoding"] == "identity"
    assert answer.json()["status"] == 415


async def test_over_64_kib_is_413(service: Service) -> None:
    big = encoded(report(hostname="PC01", padding="x" * 70_000))
    answer = post(service, big)
    assert answer.status == 413
    assert answer.json()["status"] == 413


async def test_tokens_401_and_403(service: Service, entra_issuer: EntraIssuer) -> None:
    body = encoded(report())
    missing = post(service, body, token=None)
    assert missing.status == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    expired = entra_issuer.mint_access_token(exp=int(datetime.now(UTC).timestamp()) - 3600)
    invalid = post(service, body, token=expired)
    assert invalid.status == 401
    assert 'error="invalid_token"' in invalid.headers["www-authenticate"]
    other_app = entra_issuer.mint_access_token(client_app_id=str(uuid.uuid4()))
    assert post(service, body, token=other_app).status == 403
    no_device_scope = entra_issuer.mint_access_token(scp="user_impersonation")
    assert post(service, body, token=no_device_scope).status == 403
    app_only = entra_issuer.mint_access_token(scp=None, roles=["Device.Report"])
    assert post(service, body, token=app_only).status == 403
    other_tenant = post(service, encoded(report(tenantId=str(uuid.uuid4()))))
    assert other_tenant.status == 403
    assert "tenant" in other_tenant.json()["detail"]


async def test_duplicates_and_late_reports_through_post(service: Service) -> None:
    """Ten reports of one device, POSTed newest first, two of them twice: exact rows."""
    device = str(uuid.uuid4())
    start = datetime.now(UTC) - timedelta(hours=1)
    stages = ["bundle-received", "installing", "failed", "installing", "installed"]
    sent = [
        report(device_id=device, reported_at=start + timedelta(minutes=i), stage=stages[i % 5])
        for i in range(10)
    ]
    for body in [*reversed(sent), sent[3], sent[9]]:
        assert post(service, encoded(body)).status == 202

    async def recorded() -> list[object] | None:
        found = await rows(service.storage, DEVICE_STATUS_HISTORY, "PartitionKey eq @d", d=device)
        return found if len(found) >= 10 else None

    history = await wait_for(recorded, within=30, what="ten history rows")
    await wait_for(lambda: _status_count(service, device, 10), within=30, what="reportCount 10")
    status = (await rows(service.storage, DEVICE_STATUS, "RowKey eq @d", d=device))[0]
    assert len(history) == 10
    assert [h["reportId"] for h in history] == [s["reportId"] for s in reversed(sent)]
    assert status["reportId"] == sent[9]["reportId"]
    assert status["stage"] == sent[9]["stage"]
    assert status["reportCount"] == 10


async def _status_count(service: Service, device: str, count: int) -> bool:
    found = await rows(service.storage, DEVICE_STATUS, "RowKey eq @d", d=device)
    return bool(found) and found[0]["reportCount"] == count


async def test_reference_client_reports_a_hybrid_joined_device(
    service: Service, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(service.device_token())
    # The reference client reads dsregcmd output as Windows PowerShell 5.1 writes it: UTF-16.
    dsreg = tmp_path / "dsreg.txt"
    dsreg.write_bytes((DATA / "dsregcmd_hybrid_joined.txt").read_text().encode("utf-16"))
    try:
        done = await asyncio.to_thread(
            subprocess.run,
            [
                sys.executable,
                "-m",
                "client.cmbootstrap_report",
                "--api",
                service.url("/api"),
                "--dsregcmd",
                str(dsreg),
                "--stage",
                "failed",
                "--exit-code",
                str(0x80070005),
                "--auth",
                "user",
                "--token-file",
                str(token_file),
            ],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": os.environ.get("PATH", "")},
        )
    finally:
        token_file.unlink()
        dsreg.unlink()
    assert done.returncode == 0, done.stderr
    report_id = done.stdout.strip()
    device = "e3b5a7c9-1d2f-4a6b-8c0e-2f4a6b8c0d1e"
    history = await wait_for(
        lambda: rows(service.storage, DEVICE_STATUS_HISTORY, "reportId eq @r", r=report_id),
        within=30,
        what="the client's report",
    )
    row = history[0]
    assert row["PartitionKey"] == device
    assert (row["azureAdJoined"], row["domainJoined"]) == (True, True)
    assert row["hostname"] == "PC0451.corp.contoso.com"
    assert row["ccmsetupExitCode"] == -2147024891
    assert json.loads(row["dsregcmd"])["DomainName"] == "CONTOSO"


async def test_storage_down_is_503_with_retry_after(entra_issuer: EntraIssuer) -> None:
    async with service_on_own_azurite(entra_issuer) as service:
        assert post(service, encoded(report())).status == 202
        assert service.azurite is not None
        service.azurite.stop()
        answer = post(service, encoded(report()))
        assert answer.status == 503
        assert int(answer.headers["retry-after"]) > 0
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert "Traceback" not in answer.body.decode()
