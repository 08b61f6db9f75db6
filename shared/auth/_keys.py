"""The tenant's token-signing keys, fetched from the Entra authority and cached in-process.

Keys are looked up only by `kid` in the set the authority publishes for the tenant; nothing a
token says (`jku`, `x5u`, `jwk`, `x5c`) ever chooses where keys come from.

When the set is fetched again:
- every `max_age_seconds` (6 h: four times a day) even when every kid is known, so a key Entra
  removes stops being accepted without waiting for an unknown kid;
- on an unknown `kid`, at once the first time, then at most once per `min_refresh_seconds`
  (60 s), so a flood of forged kids cannot become a flood of requests to the authority, while a
  key the authority rolls over to is picked up on first sight;
- after a failed fetch, again after a backoff that doubles from `first_retry_seconds` (2 s) up
  to `max_retry_seconds` (5 min): an outage is retried within minutes, and costs the authority
  at most 9 requests in its first 10 minutes and 12 an hour after that, however many callers.
While a fetch fails, the keys of the last good fetch are served for at most `max_stale_seconds`
(12 h) after it; then the cache holds nothing and callers get 503. So a removed or compromised
key is refused within 12 h even when the authority cannot be reached, and a short authority
outage never locks devices out. A caller that finds a scheduled refresh already running uses the
cached keys instead of queueing behind it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey

from shared.errors import ServiceUnavailable

_log = logging.getLogger(__name__)

MIN_RSA_BITS: Final = 2048
_FETCH_TIMEOUT: Final = httpx.Timeout(5.0, connect=3.0)
_MAX_JWKS_BYTES: Final = 256 * 1024
_UNAVAILABLE: Final = "The identity provider's signing keys are unavailable; retry later."


class TenantKeyCache:
    """Public RSA keys of one tenant, by `kid` (refresh rules in the module docstring).

    `clock` is monotonic seconds and `transport` the httpx transport of the key endpoint: tests
    pass their own to move time without sleeping and to script the endpoint's answers.
    """

    def __init__(
        self,
        authority_host: str,
        tenant_id: str,
        *,
        min_refresh_seconds: float = 60.0,
        max_age_seconds: float = 6 * 3600.0,
        max_stale_seconds: float = 12 * 3600.0,
        first_retry_seconds: float = 2.0,
        max_retry_seconds: float = 300.0,
        clock: Callable[[], float] = time.monotonic,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.keys_url = f"{authority_host.rstrip('/')}/{tenant_id}/discovery/v2.0/keys"
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._max_stale = max_stale_seconds
        self._first_retry = first_retry_seconds
        self._max_retry = max_retry_seconds
        self._clock = clock
        self._transport = transport
        self._keys: dict[str, RSAPublicKey] = {}
        self._fetched_at: float | None = None  # the last successful fetch
        self._attempted_at: float | None = None  # the last fetch, successful or not
        self._failures = 0  # consecutive failed fetches
        self._retry_at: float | None = None  # no fetch before this after a failure
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> RSAPublicKey | None:
        """The key named `kid`, or None if the authority does not publish it.

        Raises `ServiceUnavailable` when no usable key set is held and none can be fetched.
        """
        if self._refresh_due():
            await self._scheduled_refresh()
        keys = self._usable_keys()
        if keys is None:
            raise ServiceUnavailable(_UNAVAILABLE, retry_after_seconds=self._retry_after())
        key = keys.get(kid)
        if key is None and self._unknown_kid_may_refresh():
            await self._refresh(reason="unknown kid")
            key = (self._usable_keys() or {}).get(kid)
        return key

    # -- when ---------------------------------------------------------------------------------
    def _in_backoff(self) -> bool:
        return self._retry_at is not None and self._clock() < self._retry_at

    def _refresh_due(self) -> bool:
        if self._in_backoff():
            return False
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age

    def _unknown_kid_may_refresh(self) -> bool:
        if self._in_backoff():
            return False
        return self._attempted_at is None or self._clock() - self._attempted_at >= self._min_refresh

    def _usable_keys(self) -> dict[str, RSAPublicKey] | None:
        """The last fetched set while it is younger than max_stale; None when there is none."""
        if self._fetched_at is None or self._clock() - self._fetched_at >= self._max_stale:
            return None
        return self._keys

    def _retry_after(self) -> int:
        if self._retry_at is None:
            return 5
        return max(1, math.ceil(self._retry_at - self._clock()))

    # -- how ----------------------------------------------------------------------------------
    async def _scheduled_refresh(self) -> None:
        if self._lock.locked() and self._usable_keys() is not None:
            return  # another caller is refreshing; the cached keys are still good meanwhile
        await self._refresh(reason="scheduled")

    async def _refresh(self, *, reason: str) -> None:
        started = self._clock()
        async with self._lock:
            # Another caller fetched (or failed to) while this one waited: share its result, so
            # an outage costs the authority one request per backoff, not one per caller.
            if self._attempted_at is not None and self._attempted_at >= started:
                return
            self._attempted_at = self._clock()
            try:
                keys = await self._fetch()
            except ServiceUnavailable:
                self._record_failure(reason)
                return
            self._keys = keys
            self._fetched_at = self._clock()
            self._failures = 0
            self._retry_at = None
            _log.info("tenant signing keys loaded", extra={"keyCount": len(keys), "reason": reason})

    def _record_failure(self, reason: str) -> None:
        self._failures += 1
        backoff = min(self._first_retry * 2 ** (self._failures - 1), self._max_retry)
        self._retry_at = self._clock() + backoff
        # Keep serving the keys we have (for at most max_stale): a blip must not lock devices out.
        _log.warning(
            "tenant signing keys not refreshed; next try in %.0f s",
            backoff,
            extra={"reason": reason, "failures": self._failures, "cached": bool(self._keys)},
        )

    async def _fetch(self) -> dict[str, RSAPublicKey]:
        try:
            async with httpx.AsyncClient(
                timeout=_FETCH_TIMEOUT, follow_redirects=False, transport=self._transport
            ) as http:
                response = await http.get(self.keys_url, headers={"Accept": "application/json"})
        except httpx.HTTPError as error:
            raise ServiceUnavailable(_UNAVAILABLE) from error
        if response.status_code != 200 or len(response.content) > _MAX_JWKS_BYTES:
            raise ServiceUnavailable(_UNAVAILABLE)
        try:
            document = response.json()
        except ValueError as error:
            raise ServiceUnavailable("The identity provider sent an unreadable key set.") from error
        return parse_jwks(document)


def parse_jwks(document: object) -> dict[str, RSAPublicKey]:
    """RSA signing keys of a JWK Set by `kid`; entries of other types or uses are skipped."""
    entries = document.get("keys") if isinstance(document, Mapping) else None
    if not isinstance(entries, list):
        raise ServiceUnavailable("The identity provider sent an unreadable key set.")
    keys: dict[str, RSAPublicKey] = {}
    for entry in entries:
        key = _rsa_key(entry)
        if key is not None:
            keys[entry["kid"]] = key
    return keys


def _rsa_key(entry: Any) -> RSAPublicKey | None:
    """The entry's RSA public key (PyJWT reads the JWK), or None if it is not a usable one."""
    if not isinstance(entry, Mapping) or entry.get("kty") != "RSA":
        return None
    if entry.get("use", "sig") != "sig" or not isinstance(entry.get("kid"), str):
        return None
    try:
        key = jwt.PyJWK(dict(entry), algorithm="RS256").key
    except (jwt.PyJWTError, KeyError, TypeError, ValueError):
        return None
    if isinstance(key, RSAPrivateKey):  # a set that publishes "d" by mistake: keep only public
        key = key.public_key()
    if not isinstance(key, RSAPublicKey):
        return None
    return key if key.key_size >= MIN_RSA_BITS else None
