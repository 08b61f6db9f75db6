"""Each kind of bad setting fails with one line that names it and says what is expected."""

from __future__ import annotations

import json
import subprocess
import sys

import azure.functions as func
import pytest

from shared.errors import SettingError
from shared.http import problem_boundary
from shared.settings import Settings
from tests.support.devhost import REPO_ROOT
from tests.support.settings import product_env


def valid_env(**overrides: str) -> dict[str, str]:
    return product_env("UseDevelopmentStorage=true", **overrides)


def error_for(env: dict[str, str]) -> SettingError:
    with pytest.raises(SettingError) as caught:
        Settings.from_env(env)
    return caught.value


def test_valid_settings_are_read() -> None:
    settings = Settings.from_env(valid_env(CCMSETUP_SOURCE="C:\\CLIENT", BUNDLE_TTL_MINUTES="1440"))
    assert settings.site_code == "ABC"
    assert settings.ccmsetup_source == "C:\\CLIENT"
    assert settings.bundle_ttl_minutes == 1440
    assert settings.is_development


def test_missing_required_setting() -> None:
    env = valid_env()
    del env["AAD_TENANT_ID"]
    error = error_for(env)
    assert error.name == "AAD_TENANT_ID"
    assert str(error) == (
        "AAD_TENANT_ID is required: expected a GUID such as 72f988bf-86f1-41af-91ab-2d7cd011db47"
    )


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("AAD_CLIENT_APP_ID", "not-a-guid", "a GUID"),
        ("AAD_SERVER_APP_ID", "{9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b}", "a GUID"),
        ("SMS_SITE_CODE", "AB", "three-character site code"),
        ("SMS_SITE_CODE", "A-C", "three-character site code"),
        ("SMS_SITE_CODE", "SMS", "three-character site code"),  # reserved by ConfigMgr
        ("SMS_SITE_CODE", "con", "three-character site code"),  # reserved, any case
        ("CCM_HOSTNAME", "https://CONTOSO.CLOUDAPP.NET/CCM_Proxy_ServerAuth/1", "without a scheme"),
        ("CCMSETUP_SOURCE", 'C:\\CLIENT" /evil', "local or UNC folder"),
        ("CCMSETUP_SOURCE", "client", "local or UNC folder"),
        ("AAD_AUTHORITY_HOST", "http://login.microsoftonline.com", "http only for loopback"),
        ("GRAPH_BASE_URL", "http://graph.example.com/v1.0", "http only for loopback"),
        ("DISCOVERY_DELTA_SCHEDULE", "*/5 * * * *", "six-field NCRONTAB"),
        ("DISCOVERY_FULL_SCHEDULE", "0 0 25 * * *", "six-field NCRONTAB"),
        ("BUNDLE_TTL_MINUTES", "1441", "from 1 to 1440"),
        ("BUNDLE_TTL_MINUTES", "thirty", "from 1 to 1440"),
        ("CCMSETUP_NO_CRL_CHECK", "maybe", "true or false"),
    ],
)
def test_malformed_setting_names_itself_in_one_line(name: str, value: str, expected: str) -> None:
    error = error_for(valid_env(**{name: value}))
    message = str(error)
    assert error.name == name
    assert message.startswith(f"{name} is malformed: expected ")
    assert expected in message
    assert "\n" not in message


def test_loopback_http_is_accepted() -> None:
    settings = Settings.from_env(
        valid_env(
            AAD_AUTHORITY_HOST="http://127.0.0.1:7083", GRAPH_BASE_URL="http://localhost:7081/v1.0"
        )
    )
    assert settings.authority_host == "http://127.0.0.1:7083"


def test_no_signing_key_outside_development() -> None:
    error = error_for(valid_env(AZURE_FUNCTIONS_ENVIRONMENT="Production"))
    assert error.name == "BUNDLE_SIGNING_KEY_ID"
    assert "outside Development" in str(error)


@pytest.mark.parametrize("name", ["BUNDLE_SIGNING_KEY_ID", "BUNDLE_SIGNING_NEXT_KEY_ID"])
def test_a_signing_key_id_must_name_its_version(name: str) -> None:
    versionless = "https://kv-contoso.vault.azure.net/keys/bundle-signing"
    error = error_for(valid_env(**{name: versionless}))
    assert error.name == name
    assert "versioned" in str(error)
    versioned = Settings.from_env(valid_env(**{name: versionless + "/0123456789abcdef"}))
    assert versionless in str(versioned.signing_key_id or versioned.signing_next_key_id)


def test_long_values_are_not_echoed() -> None:
    message = str(error_for(valid_env(CCM_HOSTNAME="x" * 500)))
    assert "x" * 201 not in message
    assert "<long value>" in message


def run_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "shared.settings"],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_command_line_check_prints_one_line_and_exits_1() -> None:
    result = run_check(valid_env(SMS_SITE_CODE="SMS"))
    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("setting error: SMS_SITE_CODE is malformed")


def test_command_line_check_passes_valid_settings() -> None:
    result = run_check(valid_env())
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 1


@pytest.mark.parametrize(
    "name", ["contoso", "Contoso Ltd", "contoso.onmicrosoft.com", "Fabrikam-EU"]
)
def test_tenant_name_accepts_what_dsregcmd_shows(name: str) -> None:
    assert Settings.from_env(valid_env(AAD_TENANT_NAME=name)).tenant_name == name


@pytest.mark.parametrize("name", ['Contoso "Ltd"', "a&b", "50%", "x" * 257, "tab\there"])
def test_tenant_name_refuses_what_breaks_a_command_line(name: str) -> None:
    assert error_for(valid_env(AAD_TENANT_NAME=name)).name == "AAD_TENANT_NAME"


def test_device_trust_settings_defaults_and_values() -> None:
    defaults = Settings.from_env(valid_env())
    assert defaults.bootstrap_auth == "device"
    assert defaults.device_trust_types == {"AzureAd", "ServerAd"}
    assert defaults.public_hostnames == ()
    assert defaults.device_scope == "Bundle.Request"
    chosen = Settings.from_env(
        valid_env(
            BOOTSTRAP_AUTH="Device+User",
            DEVICE_TRUST_TYPES="azuread, Workplace",
            PUBLIC_HOSTNAMES="boot.contoso.com,FD.contoso.net",
            DEVICE_SCOPE="Bundle.Fetch",
        )
    )
    assert chosen.bootstrap_auth == "device+user"
    assert chosen.device_trust_types == {"AzureAd", "Workplace"}
    assert chosen.public_hostnames == ("boot.contoso.com", "fd.contoso.net")
    assert chosen.device_scope == "Bundle.Fetch"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BOOTSTRAP_AUTH", "certificate"),
        ("DEVICE_TRUST_TYPES", "AzureAd,Hybrid"),
        ("PUBLIC_HOSTNAMES", "https://boot.contoso.com"),
        ("DEVICE_SCOPE", "Bundle Request"),
    ],
)
def test_device_trust_settings_refuse_bad_values(name: str, value: str) -> None:
    assert error_for(valid_env(**{name: value})).name == name


async def test_a_setting_error_answer_names_the_setting_but_never_its_value() -> None:
    secret = "DefaultEndpointsProtocol=https;AccountName=x;AccountKey=c2VjcmV0"

    @problem_boundary
    async def handler(req: func.HttpRequest) -> func.HttpResponse:
        raise SettingError("AzureWebJobsStorage", "a connection string", value=secret)

    response = await handler(func.HttpRequest("GET", "http://localhost/api/x", body=b""))

    assert response.status_code == 500
    body = json.loads(response.get_body())
    assert body["detail"].startswith("AzureWebJobsStorage is missing or malformed: expected ")
    assert "AccountKey" not in response.get_body().decode()


GROUP_A = "0f8fad5b-d9cb-469f-a165-70867728950e"
GROUP_B = "7c9e6679-7425-40de-944b-e07fc1f90ae7"
NOTIFICATION_URL = (
    "EventGrid:?azuresubscriptionid=8f4b2c1d-3e5f-4a6b-9c7d-0e1f2a3b4c5d"
    "&resourcegroup=rg-cmboot&partnertopic=graph-cmboot&location=westeurope"
)


def test_discovery_groups_and_graph_notifications_defaults_and_values() -> None:
    default = Settings.from_env(valid_env())
    assert (default.discovery_groups, default.graph_notification_url) == ("none", None)
    unset = {k: v for k, v in valid_env().items() if k != "GRAPH_SUBSCRIPTION_SCHEDULE"}
    assert Settings.from_env(unset).graph_subscription_schedule == "0 17 */6 * * *"
    chosen = Settings.from_env(
        valid_env(
            DISCOVERY_GROUPS=f"{GROUP_A.upper()}, {GROUP_B},{GROUP_A}",
            GRAPH_NOTIFICATION_URL=NOTIFICATION_URL,
        )
    )
    assert chosen.discovery_groups == (GROUP_A, GROUP_B)
    assert chosen.graph_notification_url == NOTIFICATION_URL
    assert Settings.from_env(valid_env(DISCOVERY_GROUPS="ALL")).discovery_groups == "all"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DISCOVERY_GROUPS", "security"),
        ("DISCOVERY_GROUPS", f"{GROUP_A},not-a-guid"),
        ("DISCOVERY_GROUPS", ",".join([GROUP_A] * 51)),
        ("GRAPH_NOTIFICATION_URL", "https://example.com/notify"),
        ("GRAPH_NOTIFICATION_URL", NOTIFICATION_URL.replace("&location=westeurope", "")),
        ("GRAPH_NOTIFICATION_URL", NOTIFICATION_URL.replace("8f4b2c1d", "subscript")),
        ("GRAPH_SUBSCRIPTION_SCHEDULE", "every 6 hours"),
    ],
)
def test_discovery_groups_and_graph_notifications_refuse_bad_values(name: str, value: str) -> None:
    assert error_for(valid_env(**{name: value})).name == name
