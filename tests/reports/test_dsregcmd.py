"""`client.dsregcmd` on realistic `dsregcmd /status` outputs (Entra joined, not joined, hybrid)."""

from __future__ import annotations

from pathlib import Path

import pytest

from client.dsregcmd import parse_dsregcmd
from shared.reports import parse_report

DATA = Path(__file__).parents[2] / "devtools" / "samples"


def _read(name: str) -> str:
    return (DATA / name).read_text()


def test_entra_joined_device_gives_ids_and_join_state() -> None:
    status = parse_dsregcmd(_read("dsregcmd_entra_joined.txt"))
    assert status.azure_ad_joined is True
    assert status.domain_joined is False
    assert status.device_id == "5c0d8a36-7f0e-4b5a-9d34-2f1e6c8b9a01"
    assert status.tenant_id == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert status.hostname == "DESKTOP-7Q2K9LM"
    # Values keep their colons, empty values stay empty, keys with spaces survive.
    assert status.values["AuthCodeUrl"].startswith("https://login.microsoftonline.com/72f988bf")
    assert status.values["SettingsUrl"] == ""
    assert status.values["Executing Account Name"] == (
        "AzureAD\\AdeleVance, adele@contoso.onmicrosoft.com"
    )
    assert status.values["AzureAdPrtUpdateTime"] == "2026-11-27 08:02:11.000 UTC"
    assert status.sections["SSO State"]["AzureAdPrt"] == "YES"
    assert "For more information, please visit https" not in " ".join(status.values)


def test_not_joined_device_has_no_ids_but_keeps_the_diagnostics() -> None:
    status = parse_dsregcmd(_read("dsregcmd_not_joined.txt"))
    assert status.azure_ad_joined is False
    assert status.domain_joined is False
    assert status.device_id is None
    assert status.tenant_id is None
    assert status.hostname == "LAPTOP-H4R8N2VC"
    assert status.values["Client ErrorCode"] == "0x801c001d"
    assert status.values["AD Connectivity Test"] == "FAIL [0x54b]"


def test_hybrid_joined_device_normalises_braced_upper_case_guids() -> None:
    status = parse_dsregcmd(_read("dsregcmd_hybrid_joined.txt"))
    assert status.azure_ad_joined is True
    assert status.domain_joined is True
    assert status.device_id == "e3b5a7c9-1d2f-4a6b-8c0e-2f4a6b8c0d1e"
    assert status.tenant_id == "72f988bf-86f1-41af-91ab-2d7cd011db47"
    assert status.hostname == "PC0451.corp.contoso.com"
    assert status.values["DomainName"] == "CONTOSO"
    assert status.values["EnterprisePrtAuthority"] == "https://adfs.contoso.com:443/adfs"


def test_a_key_repeated_in_a_later_section_is_kept_under_its_section() -> None:
    text = "\r\n".join(
        [
            "+------+",
            "| Device State |",
            "+------+",
            "   AzureAdJoined : YES",
            "+------+",
            "| Work Account 1 |",
            "+------+",
            "   AzureAdJoined : NO",
        ]
    )
    status = parse_dsregcmd(text)
    assert status.azure_ad_joined is True
    assert status.values["Work Account 1/AzureAdJoined"] == "NO"


@pytest.mark.parametrize(
    "name", ["dsregcmd_entra_joined.txt", "dsregcmd_not_joined.txt", "dsregcmd_hybrid_joined.txt"]
)
def test_the_parsed_map_is_a_valid_report_dsregcmd_field(name: str) -> None:
    status = parse_dsregcmd(_read(name))
    report = parse_report(
        {
            "reportId": "0f8fad5b-d9cb-469f-a165-70867728950e",
            "deviceId": status.device_id or "0f8fad5b-d9cb-469f-a165-70867728950f",
            "tenantId": "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "hostname": status.hostname,
            "stage": "installed",
            "azureAdJoined": status.azure_ad_joined,
            "domainJoined": status.domain_joined,
            "ccmsetupExitCode": 0,
            "clientVersion": "5.00.9128.1000",
            "siteCode": "ABC",
            "reportedAt": "2026-11-27T10:00:00Z",
            "dsregcmd": status.values,
        }
    )
    assert report.dsregcmd == status.values
