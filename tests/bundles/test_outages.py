"""Outages through the development host: when the Entra key endpoint or storage is down, the
answer is 503 problem+json with Retry-After, never 401 and never an unaudited bundle."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest

from devhost.azurite import Azurite, running_azurite
from devtools.fakes.entra import EntraIssuer
from tests.support.devhost import DevHostProcess
from tests.support.settings import product_env


@pytest.fixture
def azurite_to_stop() -> Iterator[Azurite]:
    with running_azurite() as instance:
        yield instance


def get_bundle(host: DevHostProcess, token: str) -> httpx.Response:
    return httpx.get(
        host.url("/api/bundle"),
        params={"deviceId": str(uuid.uuid4()), "nonce": "outage-nonce-1"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=60,
    )


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) > 0
    assert "WWW-Authenticate" not in response.headers


def retry_as_told(
    host: DevHostProcess, issuer: EntraIssuer, refused: httpx.Response
) -> httpx.Response:
    """Retry as a device does: after the 503's Retry-After, a few times, bounded."""
    for _ in range(5):
        time.sleep(int(refused.headers["Retry-After"]))  # the server's own instruction
        answer = get_bundle(host, issuer.mint_access_token())
        if answer.status_code != 503:
            return answer
        refused = answer
    raise AssertionError(f"still 503 after 5 retries: {refused.text}")


def test_key_endpoint_then_storage_outage_are_503(
    azurite_to_stop: Azurite, fresh_entra_issuer: EntraIssuer
):
    issuer = fresh_entra_issuer
    env = product_env(
        azurite_to_stop.connection_string,
        AAD_AUTHORITY_HOST=issuer.authority_host,
        BOOTSTRAP_AUTH="user",
    )
    with DevHostProcess(env) as host:
        issuer.keys_available = False
        refused = get_bundle(host, issuer.mint_access_token())
        assert_unavailable(refused)
        assert issuer.key_fetches >= 1

        # The key set is fetched again once the backoff it announced in Retry-After is over.
        issuer.keys_available = True
        assert retry_as_told(host, issuer, refused).status_code == 200

        azurite_to_stop.stop()  # the blocked-device read and the audit write cannot happen
        assert_unavailable(get_bundle(host, issuer.mint_access_token()))
