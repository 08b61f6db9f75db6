"""The failure explainer: one `diagnosis` (code, summary, advice) for a device's latest state.

Rules run in a fixed order and the first that matches explains the device, because an earlier
cause makes the later symptoms expected (a device that is not Entra joined cannot get the token
ccmsetup needs, so its exit code says less than its join state):

1. the client is installed                              -> `installed`
2. dsregcmd facts: TenantId not ours, not Entra joined (hybrid join pending when domain joined),
   DeviceAuthStatus FAILED, no device certificate, certificate outside its validity, key that
   cannot sign                                         -> `tenant-mismatch`, `not-joined`, ...
3. a known install error the device reports (`installErrorCode`), e.g. 0x87D00231 when the
   user's token is refused, cross-checked against `AadUsers` (one point read for the user)
4. ccmsetup's exit code (0 success, 6 error, 7 reboot required, 8 already running,
   9 prerequisite failure, 10 setup manifest hash failure: the ConfigMgr documentation's table
   of ccmsetup return codes)
5. a device stuck at `bundle-received` or `installing` for longer than `DEVICE_STUCK_MINUTES`
6. otherwise `in-progress`, or `failed-unexplained` for a failed report nothing explains.

The explainer is pure: the caller supplies the time, the tenant and, when rule 3 needs it, what
`AadUsers` says about the user (a `UserState`), so each rule is tested directly on real
`dsregcmd /status` samples.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

Severity = Literal["ok", "info", "warning", "error"]
UserState = Literal["active", "deleted", "absent"]

# 0x87D00231 as a signed 32-bit value, the form reports keep (see `_schema`).
TOKEN_NOT_ACCEPTED: Final = 0x87D00231 - 2**32
_STUCK_STAGES: Final = ("bundle-received", "installing")
# The dsregcmd keys the rules read: recorded apart from the raw output (`dsregcmdFacts`), so a
# fleet-wide count reads a few short values per device instead of up to 16 KiB.
DSREGCMD_FACTS: Final = (
    "TenantId",
    "AzureAdJoined",
    "DomainJoined",
    "DeviceAuthStatus",
    "DeviceId",
    "Thumbprint",
    "DeviceCertificateValidity",
    "KeySignTest",
)
_VALIDITY = re.compile(
    r"\[\s*(?P<start>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? UTC\s*--\s*"
    r"(?P<end>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)(?:\.\d+)? UTC\s*\]"
)


@dataclass(frozen=True, slots=True)
class Diagnosis:
    code: str
    severity: Severity
    summary: str
    advice: str

    def to_json(self) -> dict[str, str]:
        return {
            "code": self.code,
            "severity": self.severity,
            "summary": self.summary,
            "advice": self.advice,
        }


def _d(code: str, severity: Severity, summary: str, advice: str) -> Diagnosis:
    return Diagnosis(code, severity, summary, advice)


# Every code the explainer can answer, in rule order: the console's filter lists these.
CATALOGUE: Final[dict[str, Diagnosis]] = {
    d.code: d
    for d in (
        _d(
            "installed",
            "ok",
            "The ConfigMgr client is installed and answered.",
            "Nothing to do. Check the device in the ConfigMgr console if it does not show up "
            "as a client within an hour.",
        ),
        _d(
            "tenant-mismatch",
            "error",
            "The device is joined to another Entra ID tenant.",
            "Join the device to this tenant (Settings > Accounts > Access work or school), or "
            "serve it from the bootstrap app of its own tenant.",
        ),
        _d(
            "hybrid-join-pending",
            "warning",
            "The device is domain joined but its hybrid Entra join has not completed.",
            "Make sure Microsoft Entra Connect syncs the computer object, then sign in once on "
            "the corporate network or run 'dsregcmd /join' as SYSTEM; check the "
            "'Automatic-Device-Join' task and the Error Phase in dsregcmd /status.",
        ),
        _d(
            "not-joined",
            "error",
            "The device is not Entra joined, so it has no device identity to present.",
            "Join the device to Entra ID (Autopilot or Settings > Accounts > Access work or "
            "school) and run the bootstrap again.",
        ),
        _d(
            "device-auth-failed",
            "error",
            "Entra ID refuses the device (DeviceAuthStatus FAILED): it is disabled or deleted.",
            "Enable the device in Entra ID, or remove it ('dsregcmd /leave') and join it again.",
        ),
        _d(
            "device-certificate-missing",
            "error",
            "The device has no Entra device certificate (MS-Organization-Access).",
            "Leave and rejoin Entra ID ('dsregcmd /leave', then join) so that a new device "
            "certificate is enrolled in LocalMachine\\My.",
        ),
        _d(
            "device-certificate-untrusted",
            "error",
            "The device certificate is outside its validity period.",
            "Check the device clock; if it is right, leave and rejoin Entra ID to renew the "
            "device certificate.",
        ),
        _d(
            "device-key-unusable",
            "error",
            "The device certificate's private key cannot sign (KeySignTest FAILED).",
            "Clear and re-provision the TPM if it is in a bad state, then leave and rejoin "
            "Entra ID.",
        ),
        _d(
            "user-not-discovered",
            "error",
            "The management point refused the user's token (0x87D00231): the user is not in "
            "the discovered users.",
            "Make sure the user is in scope of Entra user discovery, run a full discovery (or "
            "wait for the next delta) and retry the install; a deleted user must be restored.",
        ),
        _d(
            "user-token-refused",
            "error",
            "The management point refused the user's token (0x87D00231).",
            "The user is discovered: check the site's Entra ID app registration (tenant, "
            "server and client app ids) and that the CMG allows Entra ID authentication.",
        ),
        _d(
            "ccmsetup-error",
            "error",
            "ccmsetup ended with an error (exit code 6).",
            "Read ccmsetup.log and client.msi.log in C:\\Windows\\ccmsetup\\Logs for the "
            "failing step.",
        ),
        _d(
            "reboot-required",
            "warning",
            "ccmsetup needs a restart to finish (exit code 7).",
            "Restart the device; the installation continues after the restart.",
        ),
        _d(
            "setup-already-running",
            "info",
            "Another ccmsetup was already running (exit code 8).",
            "Wait for the running installation to finish; do not start another one.",
        ),
        _d(
            "prerequisite-failure",
            "error",
            "ccmsetup's prerequisite evaluation failed (exit code 9).",
            "Read ccmsetup.log for the missing prerequisite (disk space, OS version, a pending "
            "reboot) and fix it.",
        ),
        _d(
            "manifest-hash-failure",
            "error",
            "ccmsetup could not validate the setup manifest hash (exit code 10).",
            "The client source is damaged or was changed: refresh the /Source: folder or let "
            "ccmsetup download from the CMG again.",
        ),
        _d(
            "ccmsetup-failed",
            "error",
            "ccmsetup ended with an exit code it does not document.",
            "Read ccmsetup.log in C:\\Windows\\ccmsetup\\Logs; a Windows error code is "
            "explained by 'certutil -error <code>'.",
        ),
        _d(
            "stuck-bundle-received",
            "warning",
            "The device received its bundle but has not reported the install starting.",
            "Check that the bootstrap task runs as SYSTEM and can start ccmsetup.exe; look at "
            "the device's bootstrap log.",
        ),
        _d(
            "stuck-installing",
            "warning",
            "The installation has not finished in the expected time.",
            "Check ccmsetup.log for a download from the CMG that does not progress and that "
            "the device can reach the CMG.",
        ),
        _d(
            "failed-unexplained",
            "error",
            "The device reported a failure that none of the known causes explains.",
            "Read ccmsetup.log and the raw dsregcmd output on the device page.",
        ),
        _d(
            "in-progress",
            "info",
            "The installation is in progress.",
            "Nothing to do yet.",
        ),
    )
}

_EXIT_CODES: Final = {
    6: "ccmsetup-error",
    7: "reboot-required",
    8: "setup-already-running",
    9: "prerequisite-failure",
    10: "manifest-hash-failure",
}


def needs_user_lookup(state: Mapping[str, Any]) -> str | None:
    """The user id rule 3 must look up for this state, or None when no lookup is needed."""
    if state.get("installErrorCode") != TOKEN_NOT_ACCEPTED or state.get("stage") == "installed":
        return None
    user_id = state.get("userObjectId")
    return str(user_id) if user_id else ""


def diagnose(
    state: Mapping[str, Any],
    *,
    tenant_id: str,
    now: datetime,
    stuck_after: timedelta,
    user: UserState | None = None,
) -> Diagnosis:
    """Explain a device's latest state (the `DeviceStatus` row's fields, `dsregcmd` a dict).

    `user` is what `AadUsers` says about the report's `userObjectId` (None: not looked up or
    no user reported)."""
    stage = state.get("stage")
    if stage == "installed":
        return CATALOGUE["installed"]
    dsregcmd = state.get("dsregcmd") or {}
    code = (
        _from_dsregcmd(dsregcmd, tenant_id, now)
        or _from_install_error(state, user)
        or _from_exit_code(state.get("ccmsetupExitCode"))
        or _stuck(stage, state.get("lastReportAt"), now, stuck_after)
    )
    if code is None:
        code = "failed-unexplained" if stage == "failed" else "in-progress"
    return CATALOGUE[code]


def _yes_no(dsregcmd: Mapping[str, str], key: str) -> bool | None:
    value = dsregcmd.get(key, "").strip().upper()
    return True if value == "YES" else False if value == "NO" else None


def _from_dsregcmd(dsregcmd: Mapping[str, str], tenant_id: str, now: datetime) -> str | None:
    if not dsregcmd:
        return None
    tenant = dsregcmd.get("TenantId", "").strip().strip("{}").lower()
    if tenant and tenant != tenant_id.lower():
        return "tenant-mismatch"
    if _yes_no(dsregcmd, "AzureAdJoined") is False:
        return "hybrid-join-pending" if _yes_no(dsregcmd, "DomainJoined") else "not-joined"
    if dsregcmd.get("DeviceAuthStatus", "").strip().upper().startswith("FAILED"):
        return "device-auth-failed"
    # Only a full Device Details section can show a missing certificate (DeviceId, no Thumbprint).
    if dsregcmd.get("DeviceId", "").strip() and not dsregcmd.get("Thumbprint", "").strip():
        return "device-certificate-missing"
    validity = _VALIDITY.search(dsregcmd.get("DeviceCertificateValidity", ""))
    if validity and not _within(validity, now):
        return "device-certificate-untrusted"
    if dsregcmd.get("KeySignTest", "").strip().upper().startswith("FAIL"):
        return "device-key-unusable"
    return None


def _within(validity: re.Match[str], now: datetime) -> bool:
    start, end = (
        datetime.strptime(validity[name], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
        for name in ("start", "end")
    )
    return start <= now <= end


def _from_install_error(state: Mapping[str, Any], user: UserState | None) -> str | None:
    if state.get("installErrorCode") != TOKEN_NOT_ACCEPTED:
        return None
    if user in ("absent", "deleted"):
        return "user-not-discovered"
    return "user-token-refused"


def _from_exit_code(exit_code: object) -> str | None:
    if not isinstance(exit_code, int) or exit_code == 0:
        return None
    return _EXIT_CODES.get(exit_code, "ccmsetup-failed")


def _stuck(
    stage: object, last_report_at: object, now: datetime, stuck_after: timedelta
) -> str | None:
    if stage not in _STUCK_STAGES or not isinstance(last_report_at, datetime):
        return None
    if now - last_report_at <= stuck_after:
        return None
    return f"stuck-{stage}"
