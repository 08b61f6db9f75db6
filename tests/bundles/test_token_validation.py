"""The token validator in-process against the loopback issuer: what it accepts, key rollover,
the refresh rate limit and an authority outage. The HTTP-level attack matrix runs through the
development host in test_bundle_endpoint.py."""

from __future__ import annotations

import asyncio

import pytest

from devtools.fakes.entra import EntraIssuer, SigningKey
from shared.auth import TenantKeyCache, TokenValidator
from shared.errors import ServiceUnavailable, Unauthorized
from tests.support.settings import CLIENT_APP_ID, RESOURCE_URI, SERVER_APP_ID, TENANT_ID


class FakeClock:
    """Monotonic seconds that the test moves forward instead of sleeping."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def validator_for(issuer: EntraIssuer, clock: FakeClock | None = None) -> TokenValidator:
    keys = TenantKeyCache(
        issuer.authority_host, TENANT_ID, min_refresh_seconds=60, clock=clock or FakeClock()
    )
    return TokenValidator(
        tenant_id=TENANT_ID,
        audiences=frozenset({SERVER_APP_ID, RESOURCE_URI}),
        authority_host=issuer.authority_host,
        keys=keys,
    )


@pytest.mark.parametrize("version", [1, 2])
async def test_valid_access_token_yields_the_caller(entra_issuer: EntraIssuer, version: int):
    oid = "0b4fbe5e-7d9e-4a3e-9b7c-3f1f1d2c3b4a"
    token = entra_issuer.mint_access_token(version=version, oid=oid, roles=["Bootstrap.Admin"])

    caller = await validator_for(entra_issuer).validate_header(f"Bearer {token}")

    assert caller.tenant_id == TENANT_ID
    assert caller.object_id == oid
    assert caller.client_app_id == CLIENT_APP_ID
    assert caller.roles == frozenset({"Bootstrap.Admin"})
    assert caller.token_version == f"{version}.0"


async def test_missing_header_is_a_plain_challenge(entra_issuer: EntraIssuer):
    with pytest.raises(Unauthorized) as raised:
        await validator_for(entra_issuer).validate_header(None)
    assert raised.value.headers["WWW-Authenticate"] == "Bearer"


async def test_v1_token_with_v2_issuer_is_refused(entra_issuer: EntraIssuer):
    token = entra_issuer.mint_access_token(version=1, iss=entra_issuer.v2_issuer())
    with pytest.raises(Unauthorized) as raised:
        await validator_for(entra_issuer).validate(token)
    assert raised.value.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_id_token_is_refused_even_with_the_server_audience(entra_issuer: EntraIssuer):
    token = entra_issuer.mint_id_token(audience=SERVER_APP_ID)
    with pytest.raises(Unauthorized, match="ID token"):
        await validator_for(entra_issuer).validate(token)


async def test_rollover_to_a_new_key_is_accepted_on_first_sight(
    fresh_entra_issuer: EntraIssuer,
):
    issuer = fresh_entra_issuer
    clock = FakeClock()
    validator = validator_for(issuer, clock)
    await validator.validate(issuer.mint_access_token())
    clock.now += 61  # the last fetch is older than the rate-limit window

    issuer.rotate(keep_old=False)
    caller = await validator.validate(issuer.mint_access_token())

    assert caller.tenant_id == TENANT_ID
    assert issuer.key_fetches == 2


async def test_unknown_kids_refresh_at_most_once_per_window(fresh_entra_issuer: EntraIssuer):
    issuer = fresh_entra_issuer
    clock = FakeClock()
    validator = validator_for(issuer, clock)
    await validator.validate(issuer.mint_access_token())
    never_published = SigningKey.generate()

    for _ in range(5):
        with pytest.raises(Unauthorized, match="not signed by a key of the tenant"):
            await validator.validate(issuer.mint_access_token(key=never_published))
    assert issuer.key_fetches == 1  # forged kids inside the window cost the authority nothing

    issuer.rotate()
    with pytest.raises(Unauthorized):
        await validator.validate(issuer.mint_access_token())  # still inside the window
    clock.now += 60
    await validator.validate(issuer.mint_access_token())  # window over: refreshed, accepted
    assert issuer.key_fetches == 2


async def test_key_endpoint_outage_is_503_not_401(fresh_entra_issuer: EntraIssuer):
    fresh_entra_issuer.keys_available = False
    with pytest.raises(ServiceUnavailable):
        await validator_for(fresh_entra_issuer).validate(fresh_entra_issuer.mint_access_token())


async def test_outage_after_keys_were_loaded_keeps_serving_cached_keys(
    fresh_entra_issuer: EntraIssuer,
):
    issuer = fresh_entra_issuer
    clock = FakeClock()
    validator = validator_for(issuer, clock)
    await validator.validate(issuer.mint_access_token())
    issuer.keys_available = False
    clock.now += 7 * 3600  # past the cache's 6 h max age (not its 12 h limit): refresh fails

    caller = await validator.validate(issuer.mint_access_token())

    assert caller.client_app_id == CLIENT_APP_ID
    assert issuer.key_fetches == 2


async def test_concurrent_callers_during_an_outage_cost_the_authority_one_request(
    fresh_entra_issuer: EntraIssuer,
):
    issuer = fresh_entra_issuer
    clock = FakeClock()
    validator = validator_for(issuer, clock)
    issuer.keys_available = False
    token = issuer.mint_access_token()

    outcomes = await asyncio.gather(
        *(validator.validate(token) for _ in range(10)), return_exceptions=True
    )

    assert all(isinstance(outcome, ServiceUnavailable) for outcome in outcomes)
    assert issuer.key_fetches == 1
    issuer.keys_available = True
    clock.now += 1.5  # inside the 2 s backoff: refused without asking the authority again
    with pytest.raises(ServiceUnavailable) as refused:
        await validator.validate(token)
    assert refused.value.headers["Retry-After"] == "1"
    assert issuer.key_fetches == 1
    clock.now += 0.5  # the backoff is over: the next request tries again
    assert (await validator.validate(token)).tenant_id == TENANT_ID
    assert issuer.key_fetches == 2
