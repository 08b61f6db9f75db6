"""`GET /api/health` of the product's own app, through the development host: anyone gets the
status, a signed-in admin also gets the details, and no answer leaks a setting or an error."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from email.message import Message
from typing import Any

import pytest

from devhost.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, free_port
from devtools.fakes.entra import ADMIN_ROLE, EntraIssuer, SigningKey
from tests.support.devhost import DevHostProcess
from tests.support.issuer import entra_issuer
from tests.support.settings import product_env

__all__ = ["entra_issuer"]
PROBLEM_MEMBERS = {"type", "title", "status", "detail"}


@dataclass
class Answer:
    status: int
    headers: Message  # case-insensitive, as HTTP header names are
    body: dict[str, Any]


def get_health(host: DevHostProcess, token: str | None = None) -> Answer:
    request = urllib.request.Request(host.url("/api/health"))
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return Answer(response.status, response.headers, json.load(response))
    except urllib.error.HTTPError as error:
        return Answer(error.code, error.headers, json.load(error))


def host_env(connection_string: str, issuer: EntraIssuer, **overrides: str) -> dict[str, str]:
    return product_env(connection_string, AAD_AUTHORITY_HOST=issuer.authority_host, **overrides)


@pytest.fixture(scope="module")
def healthy_host(azurite: Azurite, entra_issuer: EntraIssuer) -> Iterator[DevHostProcess]:
    with DevHostProcess(host_env(azurite.connection_string, entra_issuer)) as host:
        yield host


def test_anonymous_caller_gets_only_the_status(healthy_host: DevHostProcess) -> None:
    answer = get_health(healthy_host)
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("application/json")
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.body == {"status": "healthy"}


def test_admin_gets_storage_settings_and_last_run(
    healthy_host: DevHostProcess, entra_issuer: EntraIssuer
) -> None:
    answer = get_health(healthy_host, entra_issuer.mint_admin_token())
    assert answer.status == 200
    assert answer.body["status"] == "healthy"
    assert answer.body["storage"] == {"reachable": True}
    assert answer.body["settings"] == {"valid": True, "error": None}
    assert "lastDiscoveryRun" in answer.body
    assert "subscriptions" in answer.body


@pytest.mark.parametrize(
    "kind", ["device token", "app-only token with the admin role", "admin role of another name"]
)
def test_other_valid_tokens_get_only_the_status(
    healthy_host: DevHostProcess, entra_issuer: EntraIssuer, kind: str
) -> None:
    token = {
        "device token": entra_issuer.mint_access_token(),
        "app-only token with the admin role": entra_issuer.mint_access_token(
            roles=[ADMIN_ROLE], scp=None
        ),
        "admin role of another name": entra_issuer.mint_admin_token(roles=["Reader"]),
    }[kind]
    answer = get_health(healthy_host, token)
    assert answer.status == 200
    assert answer.body == {"status": "healthy"}


def test_an_invalid_token_is_401_not_a_silent_downgrade(
    healthy_host: DevHostProcess, entra_issuer: EntraIssuer
) -> None:
    # Signed by a key the tenant does not publish: not valid, whatever roles it claims.
    token = entra_issuer.mint_access_token(roles=[ADMIN_ROLE], key=SigningKey.generate())
    answer = get_health(healthy_host, token)
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert set(answer.body) == PROBLEM_MEMBERS


def test_storage_down_is_503_with_details_for_admins_only(
    entra_issuer: EntraIssuer,
) -> None:
    closed = free_port()  # nothing listens here
    unreachable = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{closed}/{ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{closed}/{ACCOUNT};"
    )
    with DevHostProcess(host_env(unreachable, entra_issuer)) as host:
        anonymous = get_health(host)
        admin = get_health(host, entra_issuer.mint_admin_token())
        log = host.output()

    assert anonymous.status == 503
    assert anonymous.headers["Content-Type"].startswith("application/problem+json")
    assert int(anonymous.headers["Retry-After"]) > 0
    assert set(anonymous.body) == PROBLEM_MEMBERS
    assert anonymous.body["status"] == 503
    assert "storage" not in anonymous.body["detail"].lower()

    assert admin.status == 503
    assert "storage is not reachable" in admin.body["detail"]
    assert admin.body["storage"] == {"reachable": False}
    assert admin.body["settings"] == {"valid": True, "error": None}

    assert "health: storage is not reachable" in log
    for text in (json.dumps(anonymous.body), json.dumps(admin.body), log):
        assert ACCOUNT_KEY not in text


def test_invalid_setting_is_503_that_names_nothing_but_the_log_names_it(
    azurite: Azurite, entra_issuer: EntraIssuer
) -> None:
    env = host_env(azurite.connection_string, entra_issuer, SMS_SITE_CODE="SMS")
    with DevHostProcess(env) as host:
        anonymous = get_health(host)
        # No token can be checked while the settings are invalid: an admin gets the same answer.
        with_token = get_health(host, entra_issuer.mint_admin_token())
        log = host.output()

    for answer in (anonymous, with_token):
        assert answer.status == 503
        assert answer.headers["Content-Type"].startswith("application/problem+json")
        assert set(answer.body) == PROBLEM_MEMBERS
        assert "SMS_SITE_CODE" not in json.dumps(answer.body)
        assert "'SMS'" not in json.dumps(answer.body)
    assert "setting error: SMS_SITE_CODE is malformed" in log
