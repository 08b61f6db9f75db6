"""Reference device reporter: a status report from `dsregcmd /status` output and ccmsetup's exit
code, POSTed to `/api/reports`. What `client/Invoke-CMBootstrap.ps1` does on Windows, in Python.

    dsregcmd /status > dsreg.txt
    python -m client.cmbootstrap_report --api https://<app>.azurewebsites.net/api \\
        --dsregcmd dsreg.txt --stage installed --exit-code 0 \\
        --client-version 5.00.9128.1000 --site-code ABC --auth device --cert dev.pem --key dev.key

Credentials as `client/cmbootstrap_client.py` takes them (`--auth device|user|device+user`): the
device proof carries `bodySha256`, the SHA-256 of the exact body sent, so the report cannot be
swapped in transit or replayed with another body. A token comes from the environment
(CMBOOTSTRAP_TOKEN) or `--token-file`, never from the command line, where other users could read
it in the process list. Nothing of the server stack is needed on the device.
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from client.cmbootstrap_client import (
    Credentials,
    ServiceError,
    add_credential_arguments,
    credentials_from,
    http_request,
)
from client.dsregcmd import DsregcmdStatus, parse_dsregcmd

STAGES: Final = ("bundle-received", "installing", "installed", "failed")


class ReportError(Exception):
    """The report could not be built or the service refused it; `str()` says why."""


def read_dsregcmd_output(path: Path) -> str:
    """`dsregcmd /status > file` in Windows PowerShell 5.1 writes UTF-16 with a BOM."""
    raw = path.read_bytes()
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        return raw.decode("utf-16")
    return raw.decode("utf-8-sig", errors="replace")


def build_report(
    status: DsregcmdStatus,
    *,
    stage: str,
    exit_code: int | None,
    client_version: str | None = None,
    site_code: str | None = None,
    device_id: str | None = None,
    tenant_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    device = device_id or status.device_id
    tenant = tenant_id or status.tenant_id
    if not device or not tenant:
        raise ReportError("dsregcmd shows no DeviceId/TenantId: pass --device-id and --tenant-id")
    return {
        "reportId": str(uuid.uuid4()),
        "deviceId": device,
        "tenantId": tenant,
        "hostname": status.hostname or socket.gethostname(),
        "stage": stage,
        "azureAdJoined": status.azure_ad_joined,
        "domainJoined": status.domain_joined,
        "ccmsetupExitCode": exit_code,
        "clientVersion": client_version,
        "siteCode": site_code,
        "reportedAt": (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "dsregcmd": status.values,
    }


def post_report(api: str, credentials: Credentials, report: dict[str, Any]) -> str:
    """POST the report; the reportId the service accepted (202), or `ReportError` with why not."""
    url = api.rstrip("/") + "/reports"
    body = json.dumps(report).encode()
    headers = {
        "Content-Type": "application/json",
        **credentials.headers("POST", url, body=body),
    }
    try:
        answer = http_request("POST", url, headers, body)
        return str(json.loads(answer)["reportId"])
    except ServiceError as error:
        raise ReportError(str(error)) from None
    except (ValueError, KeyError, TypeError):
        raise ReportError("the service's answer holds no reportId") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.cmbootstrap_report")
    parser.add_argument("--api", required=True, help="the app's API root, e.g. https://x/api")
    parser.add_argument("--dsregcmd", type=Path, required=True, help="dsregcmd /status output")
    parser.add_argument("--stage", choices=STAGES, required=True)
    parser.add_argument("--exit-code", type=int, default=None, help="ccmsetup's exit code")
    parser.add_argument("--client-version")
    parser.add_argument("--site-code")
    parser.add_argument("--device-id", help="when dsregcmd shows none")
    parser.add_argument("--tenant-id", help="when dsregcmd shows none")
    add_credential_arguments(parser)
    args = parser.parse_args(argv)
    try:
        credentials = credentials_from(args)
    except (OSError, ServiceError) as error:
        print(f"report not sent: {error}", file=sys.stderr)
        return 2
    try:
        status = parse_dsregcmd(read_dsregcmd_output(args.dsregcmd))
        report = build_report(
            status,
            stage=args.stage,
            exit_code=args.exit_code,
            client_version=args.client_version,
            site_code=args.site_code,
            device_id=args.device_id,
            tenant_id=args.tenant_id,
        )
        report_id = post_report(args.api, credentials, report)
    except (OSError, ReportError) as error:
        print(f"report not sent: {error}", file=sys.stderr)
        return 1
    print(report_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
