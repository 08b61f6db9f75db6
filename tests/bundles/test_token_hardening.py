"""Token hardening in-process: the v1 issuer of each Entra cloud, and the tenant key cache's
refresh schedule (periodic, after failures with bounded backoff, stale-key limit) driven by an
injected clock and an httpx.MockTransport standing in for the key endpoint."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable

import httpx
import pytest

from devtools.fakes.entra import EntraIssuer, SigningKey
from shared.auth import TenantKeyCache, TokenValidator, v1_issuer
from shared.errors import ServiceUnavailable, Unauthorized
from tests.bundles.test_token_validation import FakeClock
from tests.support.settings import RESOURCE_URI, SERVER_APP_ID, TENANT_ID

HOUR = 3600.0


# -- the v1 issuer follows the authority's cloud ------------------------------------------------
@pytest.mark.parametrize(
    ("authority", "sts"),
    [
        ("https://login.microsoftonline.com", "https://sts.windows.net"),
        ("https://login.microsoftonline.com/", "https://sts.windows.net"),
        ("https://LOGIN.MICROSOFTONLINE.COM", "https://sts.windows.net"),
        ("https://login.windows.net", "https://sts.windows.net"),
        ("https://login.microsoftonline.us", "https://sts.windows.net"),
        ("https://login.usgovcloudapi.net", "https://sts.windows.net"),
        ("https://login.partner.microsoftonline.cn", "https://sts.chinacloudapi.cn"),
        ("https://login.chinacloudapi.cn", "https://sts.chinacloudapi.cn"),
        ("http://127.0.0.1:8765", "https://sts.windows.net"),  # the loopback stand-in
        ("http://localhost:8765", "https://sts.windows.net"),
        ("https://login.microsoftonline.de", None),  # Azure Germany, closed in 2021
        ("https://login.contoso.com", None),
        ("https://login.microsoftonline.com.evil.example", None),
    ],
)
def test_v1_issuer_of_each_cloud(authority: str, sts: str | None) -> None:
    expected = None if sts is None else f"{sts}/{TENANT_ID}/"
    assert v1_issuer(authority, TENANT_ID) == expected


def validator_in_cloud(authority_host: str, issuer: EntraIssuer) -> TokenValidator:
    """A validator configured for `authority_host`, with keys from the loopback issuer."""
    return TokenValidator(
        tenant_id=TENANT_ID,
        audiences=frozenset({SERVER_APP_ID, RESOURCE_URI}),
        authority_host=authority_host,
        keys=TenantKeyCache(issuer.authority_host, TENANT_ID, clock=FakeClock()),
    )


async def test_china_cloud_accepts_its_own_v1_issuer_only(entra_issuer: EntraIssuer) -> None:
    validator = validator_in_cloud("https://login.partner.microsoftonline.cn", entra_issuer)
    china = entra_issuer.mint_access_token(
        version=1, iss=f"https://sts.chinacloudapi.cn/{TENANT_ID}/"
    )
    assert (await validator.validate(china)).token_version == "1.0"

    global_cloud = entra_issuer.mint_access_token(version=1)  # iss https://sts.windows.net/...
    with pytest.raises(Unauthorized, match="issuer"):
        await validator.validate(global_cloud)


async def test_us_government_v1_tokens_keep_the_global_sts(entra_issuer: EntraIssuer) -> None:
    validator = validator_in_cloud("https://login.microsoftonline.us", entra_issuer)
    assert (await validator.validate(entra_issuer.mint_access_token(version=1))).tenant_id
    v2 = entra_issuer.mint_access_token(iss=f"https://login.microsoftonline.us/{TENANT_ID}/v2.0")
    assert (await validator.validate(v2)).token_version == "2.0"


async def test_unknown_authority_refuses_v1_and_accepts_v2(
    entra_issuer: EntraIssuer, caplog: pytest.LogCaptureFixture
) -> None:
    validator = validator_in_cloud("https://login.contoso.com", entra_issuer)
    assert "AAD_AUTHORITY_HOST https://login.contoso.com is not a known Entra cloud" in caplog.text

    for sts in (
        "https://sts.windows.net",
        "https://sts.chinacloudapi.cn",
        "https://login.contoso.com",
    ):
        with pytest.raises(Unauthorized, match="issuer"):
            await validator.validate(
                entra_issuer.mint_access_token(version=1, iss=f"{sts}/{TENANT_ID}/")
            )
    v2 = entra_issuer.mint_access_token(iss=f"https://login.contoso.com/{TENANT_ID}/v2.0")
    assert (await validator.validate(v2)).token_version == "2.0"


# -- the key cache's refresh schedule ---------------------------------------------------------
class KeyEndpoint:
    """The authority's key endpoint as an httpx.MockTransport: publishes `keys`, or answers
    `status` when that is not 200; records the clock time of every request it receives."""

    def __init__(self, clock: FakeClock, keys: Iterable[SigningKey]) -> None:
        self.clock = clock
        self.keys = list(keys)
        self.status = 200
        self.requests: list[float] = []
        self.gate: asyncio.Event | None = None  # when set, requests wait for it

    async def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(self.clock.now)
        if self.gate is not None:
            await self.gate.wait()
        if self.status != 200:
            return httpx.Response(self.status, json={"error": "temporarily_unavailable"})
        return httpx.Response(200, json={"keys": [key.public_jwk() for key in self.keys]})

    def cache(self) -> TenantKeyCache:
        return TenantKeyCache(
            "https://login.microsoftonline.com",
            TENANT_ID,
            clock=self.clock,
            transport=httpx.MockTransport(self.handle),
        )


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return SigningKey.generate()


async def test_keys_are_refreshed_every_6_hours_even_when_every_kid_is_known(
    key: SigningKey,
) -> None:
    clock = FakeClock()
    endpoint = KeyEndpoint(clock, [key])
    cache = endpoint.cache()
    assert await cache.get(key.kid) is not None

    endpoint.keys = []  # Entra retires the key (say it was compromised)
    seen_until = clock.now
    while await cache.get(key.kid) is not None:  # a device presents a token every minute
        clock.now += 60
        seen_until = clock.now
        assert clock.now - 1000.0 <= 12 * HOUR, "the retired key was accepted for 12 h"

    assert seen_until - 1000.0 == 6 * HOUR  # refused from the first request after 6 h
    assert len(endpoint.requests) == 2  # one fetch per 6 h, not one per request


async def test_a_failed_refresh_is_retried_with_bounded_backoff(key: SigningKey) -> None:
    clock = FakeClock()
    endpoint = KeyEndpoint(clock, [key])
    cache = endpoint.cache()
    await cache.get(key.kid)
    clock.now += 6 * HOUR
    endpoint.status = 503
    outage_start = clock.now

    for _ in range(40 * 60):  # 40 minutes of requests, one per second
        assert await cache.get(key.kid) is not None  # the cached key is served throughout
        clock.now += 1

    attempts = [t - outage_start for t in endpoint.requests[1:]]
    gaps = [later - earlier for earlier, later in itertools.pairwise(attempts)]
    assert attempts[0] == 0
    assert gaps[:9] == [2, 4, 8, 16, 32, 64, 128, 256, 300]  # doubling from 2 s ...
    assert set(gaps[9:]) == {300}  # ... capped at 5 minutes, however long it lasts
    assert len([t for t in attempts if t < 600]) == 9

    endpoint.status = 200  # the authority recovers: picked up within 5 minutes
    recovered_at = clock.now
    while len(endpoint.requests) == len(attempts) + 1:
        await cache.get(key.kid)
        clock.now += 1
    assert clock.now - recovered_at <= 300
    requests = len(endpoint.requests)
    for _ in range(600):  # healthy again: no more fetches until the next 6 h refresh
        await cache.get(key.kid)
        clock.now += 1
    assert len(endpoint.requests) == requests


async def test_an_unknown_kid_does_not_bypass_the_backoff(key: SigningKey) -> None:
    clock = FakeClock()
    endpoint = KeyEndpoint(clock, [key])
    cache = endpoint.cache()
    await cache.get(key.kid)
    clock.now += 6 * HOUR
    endpoint.status = 500
    await cache.get(key.kid)  # the scheduled refresh fails: backoff starts
    clock.now += 61  # past the 2 s backoff and the 60 s unknown-kid gate

    for _ in range(3):
        assert await cache.get(SigningKey.generate().kid) is None
    # The first forged kid's request retries once (it fails: 4 s of backoff); the unknown kids
    # themselves fetch nothing while the authority is in backoff.
    assert len(endpoint.requests) == 3


async def test_cached_keys_expire_12_hours_after_the_last_good_fetch(key: SigningKey) -> None:
    clock = FakeClock()
    endpoint = KeyEndpoint(clock, [key])
    cache = endpoint.cache()
    await cache.get(key.kid)
    endpoint.status = 503

    clock.now += 12 * HOUR - 1
    assert await cache.get(key.kid) is not None  # a long outage is bridged ...
    clock.now += 1
    with pytest.raises(ServiceUnavailable) as refused:  # ... for 12 h, then nothing is trusted
        await cache.get(key.kid)
    assert 1 <= int(refused.value.headers["Retry-After"]) <= 300


async def test_callers_use_cached_keys_while_a_scheduled_refresh_runs(key: SigningKey) -> None:
    clock = FakeClock()
    endpoint = KeyEndpoint(clock, [key])
    cache = endpoint.cache()
    await cache.get(key.kid)
    clock.now += 6 * HOUR
    endpoint.gate = asyncio.Event()  # the authority answers slowly

    refreshing = asyncio.create_task(cache.get(key.kid))
    for _ in range(100):  # bounded: a few loop turns bring the task to the endpoint
        if len(endpoint.requests) == 2:
            break
        await asyncio.sleep(0)
    assert len(endpoint.requests) == 2
    others = await asyncio.wait_for(asyncio.gather(*(cache.get(key.kid) for _ in range(5))), 5)

    assert all(found is not None for found in others)  # answered without waiting
    assert not refreshing.done()
    endpoint.gate.set()
    assert await asyncio.wait_for(refreshing, 5) is not None
    assert len(endpoint.requests) == 2
