"""Reference device reporter: a status report from `dsregcmd /status` output and ccmsetup's exit
code, POSTed to `/api/reports`. What `client/Invoke-CMBootstrap.ps1` does on Windows, in Python.

    dsregcmd /status > dsreg.txt
    CMBOOTSTRAP_TOKEN=<Entra access token> python -m client.cmbootstrap_report \\
        --api https://<app>.azurewebsites.net/api --dsregcmd dsreg.txt --stage installed \\
        --exit-code 0 --client-version 5.00.9128.1000 --site-code ABC

The token comes from the environment (or `--token-file`), never from the command line, where
other users could read it in the process list.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from shared.dsregcmd import DsregcmdStatus, parse_dsregcmd
from shared.reports import STAGES, format_utc


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
        "reportedAt": format_utc(now or datetime.now(UTC)),
        "dsregcmd": status.values,
    }


def post_report(api: str, token: str, report: dict[str, Any], *, timeout: float = 30) -> str:
    """POST the report; the reportId the service accepted (202), or `ReportError` with why not."""
    request = urllib.request.Request(  # noqa: S310 (the API URL is the admin's https endpoint)
        api.rstrip("/") + "/reports",
        data=json.dumps(report).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            return str(json.load(response)["reportId"])
    except urllib.error.HTTPError as error:
        problem = error.read().decode(errors="replace")[:2000]
        raise ReportError(f"the service answered {error.code}: {problem}") from None
    except (urllib.error.URLError, TimeoutError) as error:
        raise ReportError(f"the service could not be reached: {error}") from None


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
    parser.add_argument("--token-file", type=Path, help="default: $CMBOOTSTRAP_TOKEN")
    args = parser.parse_args(argv)
    token = (
        args.token_file.read_text().strip()
        if args.token_file
        else os.environ.get("CMBOOTSTRAP_TOKEN", "")
    )
    if not token:
        print("no access token: set CMBOOTSTRAP_TOKEN or pass --token-file", file=sys.stderr)
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
        report_id = post_report(args.api, token, report)
    except (OSError, ReportError) as error:
        print(f"report not sent: {error}", file=sys.stderr)
        return 1
    print(report_id)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
