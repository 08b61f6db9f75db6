"""Every settings validator against the ConfigMgr documentation's own example.

"Install and assign Configuration Manager clients from the Internet using Azure AD for
authentication", step 4 ("Install and register the Configuration Manager client using Azure
Active Directory Identity"), gives this installation command line:

    ccmsetup.exe /NoCrlCheck /Source:C:\\CLIENT  CCMHOSTNAME=SCCMPROXYCONTOSO.CLOUDAPP.NET/
    CCM_Proxy_ServerAuth/72457598037527932 SMSSiteCode=HEC AADTENANTID=780433B5-E05E-4B7D-BFD1-
    E8013911E543 AADTENANTNAME=contoso  AADCLIENTAPPID=<GUID> AADRESOURCEURI=https://contososerver

(one line in the documentation; `<GUID>` is its placeholder for the client app id). Its values
must be accepted as settings and come back out of the bundle's `ccmsetup` claim unchanged, with
one deliberate exception: AADTENANTID is written in lower case. A GUID's case carries no meaning
(RFC 9562 reads either case and writes lower case), Entra writes `tid` in lower case, and one
spelling lets the bundle's AADTENANTID be compared with its `tid` claim as plain text.

The switches and properties that settings can set are then held to what ccmsetup documents
("Client installation parameters and properties"): /source takes "a local or UNC path" (read
over SMB, so no URL), SMSMP a management point name or `https://` and its name.
"""

from __future__ import annotations

import pytest

from shared.bundles import CcmsetupCommand
from shared.errors import SettingError
from shared.settings import Settings
from tests.bundles.windows_argv import split_windows_command_line
from tests.support.settings import product_env

DOCUMENTATION_EXAMPLE = (
    "ccmsetup.exe /NoCrlCheck /Source:C:\\CLIENT  "
    "CCMHOSTNAME=SCCMPROXYCONTOSO.CLOUDAPP.NET/CCM_Proxy_ServerAuth/72457598037527932 "
    "SMSSiteCode=HEC AADTENANTID=780433B5-E05E-4B7D-BFD1-E8013911E543 AADTENANTNAME=contoso  "
    "AADCLIENTAPPID=<GUID> AADRESOURCEURI=https://contososerver"
)
CLIENT_APP_ID = "7506ee10-f7ec-415a-b415-cd3d58790d97"  # for the documentation's <GUID>
# Which setting feeds each property of the documentation's command line.
SETTING_OF_PROPERTY = {
    "CCMHOSTNAME": "CCM_HOSTNAME",
    "SMSSiteCode": "SMS_SITE_CODE",
    "AADTENANTID": "AAD_TENANT_ID",
    "AADTENANTNAME": "AAD_TENANT_NAME",
    "AADCLIENTAPPID": "AAD_CLIENT_APP_ID",
    "AADRESOURCEURI": "AAD_RESOURCE_URI",
}


def documentation_argv() -> list[str]:
    return split_windows_command_line(DOCUMENTATION_EXAMPLE.replace("<GUID>", CLIENT_APP_ID))


def settings_of(argv: list[str], **overrides: str) -> Settings:
    """The app settings an admin writes to reproduce `argv` (ccmsetup.exe, switches, props)."""
    env: dict[str, str] = {}
    for argument in argv[1:]:
        if argument == "/NoCrlCheck":
            env["CCMSETUP_NO_CRL_CHECK"] = "true"
        elif argument.startswith("/Source:"):
            env["CCMSETUP_SOURCE"] = argument.removeprefix("/Source:")
        else:
            name, _, value = argument.partition("=")
            env[SETTING_OF_PROPERTY[name]] = value
    return Settings.from_env(product_env("UseDevelopmentStorage=true", **env | overrides))


def test_the_documentation_example_is_accepted_as_settings() -> None:
    settings = settings_of(documentation_argv())

    assert settings.no_crl_check is True
    assert settings.ccmsetup_source == "C:\\CLIENT"
    assert settings.ccm_hostname == (
        "SCCMPROXYCONTOSO.CLOUDAPP.NET/CCM_Proxy_ServerAuth/72457598037527932"
    )
    assert settings.site_code == "HEC"
    assert settings.tenant_id == "780433b5-e05e-4b7d-bfd1-e8013911e543"
    assert settings.tenant_name == "contoso"
    assert settings.client_app_id == CLIENT_APP_ID
    assert settings.resource_uri == "https://contososerver"


def test_the_documentation_example_round_trips_into_the_bundle_claim() -> None:
    argv = documentation_argv()
    claim = CcmsetupCommand.from_settings(settings_of(argv)).as_claim()

    expected = [*argv]
    tenant_at = next(i for i, a in enumerate(expected) if a.startswith("AADTENANTID="))
    name, _, guid = expected[tenant_at].partition("=")
    expected[tenant_at] = f"{name}={guid.lower()}"  # the one normalisation (module docstring)
    assert split_windows_command_line(str(claim["commandLine"])) == expected
    # Nothing needed quoting: the line is the documentation's, single-spaced, GUID in lower case.
    assert claim["commandLine"] == " ".join(expected)
    assert claim["switches"] == ["/NoCrlCheck", "/Source:C:\\CLIENT"]
    assert claim["properties"] == dict(a.split("=", 1) for a in expected[3:])


def test_a_tenant_name_with_a_space_is_quoted_and_splits_back() -> None:
    settings = settings_of(documentation_argv(), AAD_TENANT_NAME="Contoso Ltd")
    claim = CcmsetupCommand.from_settings(settings).as_claim()

    assert ' "AADTENANTNAME=Contoso Ltd" ' in str(claim["commandLine"])
    assert "AADTENANTNAME=Contoso Ltd" in split_windows_command_line(str(claim["commandLine"]))
    assert claim["properties"]["AADTENANTNAME"] == "Contoso Ltd"  # type: ignore[index]


# -- SMSMP: the documented forms only ------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "smsmp01.contoso.com",  # ccmsetup's documented examples ...
        "https://smsmp01.contoso.com",
        "https://mp1.contoso.com",  # ... and the Azure AD install example's
        "HTTPS://MP1.CONTOSO.COM",
    ],
)
def test_management_point_accepts_a_name_or_https_and_a_name(value: str) -> None:
    settings = settings_of(documentation_argv(), SMS_MP=value)
    command = CcmsetupCommand.from_settings(settings)
    assert command.properties["SMSMP"] == value
    assert f"SMSMP={value}" in split_windows_command_line(command.command_line())


@pytest.mark.parametrize(
    "value",
    [
        "https://admin:Secr3t@mp1.contoso.com",  # credentials in a URL
        "https://admin@mp1.contoso.com",
        "admin:Secr3t@mp1.contoso.com",
        "http://mp1.contoso.com",  # http: the bare name is the documented form
        "ftp://mp1.contoso.com",
        "https://mp1.contoso.com:8443",  # a port, path, query or fragment is not a name
        "https://mp1.contoso.com/",
        "https://mp1.contoso.com/CCM_Proxy_MutualAuth/72186325152220500",
        "https://mp1.contoso.com?x=1",
        "https://mp1.contoso.com#x",
        "https://",
        "mp1",  # a bare NetBIOS name means nothing on the internet
        "mp1.contoso.com & calc.exe",  # shell metacharacters
        "mp1.contoso.com;calc",
        "mp1.contoso.com|calc",
        "$(calc).contoso.com",
        "`calc`.contoso.com",
        "mp1.contoso.com%PATH%",
        'mp1.contoso.com" /Source:\\\\evil\\share',
        "mp1.contoso.com\nSMSSITECODE=EVL",
    ],
)
def test_management_point_refuses_anything_else_naming_sms_mp(value: str) -> None:
    with pytest.raises(SettingError) as refused:
        settings_of(documentation_argv(), SMS_MP=value)
    assert refused.value.name == "SMS_MP"
    assert str(refused.value).startswith("SMS_MP is malformed: expected ")
    assert "Secr3t" not in str(refused.value)  # a password is never echoed into a log


# -- /Source: a local or UNC folder only -------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "C:\\CLIENT",  # the Azure AD install example
        "\\\\server\\share",  # ccmsetup's /source example
        "\\\\SiteServer\\SMS_ABC\\Client",  # the site's client folder share
        "\\\\dp01.contoso.com\\SMS_DP$\\Client",  # a hidden share
        "C:\\CM Client Files\\",
        "D:\\Program Files (x86)\\ConfigMgr Client",
    ],
)
def test_source_accepts_local_and_unc_folders(value: str) -> None:
    settings = settings_of(documentation_argv(), CCMSETUP_SOURCE=value)
    command = CcmsetupCommand.from_settings(settings)
    assert f"/Source:{value}" in split_windows_command_line(command.command_line())


@pytest.mark.parametrize(
    "value",
    [
        "https://dp01.contoso.com/SMS_DP_SMSPKG$/Client",  # ccmsetup reads /source over SMB only
        "http://dp01.contoso.com/Client",
        "file://dp01/share",
        "\\\\admin:Secr3t@dp01\\share",
        "CLIENT",  # relative paths depend on where ccmsetup happens to start
        ".\\CLIENT",
        "\\\\?\\C:\\CLIENT",  # device and long-path prefixes
        "\\\\.\\pipe\\ccmsetup",
        "\\\\server",  # a server without a share
        "C:\\CLIENT & calc.exe",  # cmd.exe and PowerShell metacharacters
        "C:\\CLIENT|calc",
        "C:\\CLIENT;calc",
        "C:\\CLIENT^",
        "C:\\%TEMP%",
        "C:\\$env:TEMP",
        "C:\\$(calc)",
        "\\\\server\\sh$are",  # `$` only ends a share name
        "C:\\it's",
        "C:\\`calc`",
        "C:\\{x}",
        "C:\\CLIENT!",
        "C:\\a<b",
        "C:\\CLIENT\\*",
        'C:\\CLIENT" /mp:https://evil.example.com',
        "C:\\CLIENT /mp:evil",  # '/' would start a switch
        "C:\\CLIENT\tSMSSITECODE=EVL",
        "C:\\a\\\\b",
        "C:\\" + "x" * 240,
    ],
)
def test_source_refuses_anything_else_naming_ccmsetup_source(value: str) -> None:
    with pytest.raises(SettingError) as refused:
        settings_of(documentation_argv(), CCMSETUP_SOURCE=value)
    assert refused.value.name == "CCMSETUP_SOURCE"


@pytest.mark.parametrize(
    "value", ["https://admin:Secr3t@contososerver", "https://contososerver/a b", "contososerver"]
)
def test_resource_uri_refuses_credentials_and_what_is_not_an_app_id_uri(value: str) -> None:
    with pytest.raises(SettingError) as refused:
        settings_of(documentation_argv(), AAD_RESOURCE_URI=value)
    assert refused.value.name == "AAD_RESOURCE_URI"
