"""The tenant's token-signing keys, fetched from the Entra authority and cached in-process.

Keys are looked up only by `kid` in the set the authority publishes for the tenant; nothing a
token says (`jku`, `x5u`, `jwk`, `x5c`) ever chooses where keys come from. An unknown `kid`
triggers a refresh at once the first time, then at most once per `min_refresh_seconds`, so a
flood of forged kids cannot turn into a flood of requests to the authority, while a key the
authority rolls over to is picked up on first sight.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final

import httpx
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey, RSAPublicNumbers

from shared.b64url import b64url_decode
from shared.errors import ServiceUnavailable

_log = logging.getLogger(__name__)

MIN_RSA_BITS: Final = 2048
_FETCH_TIMEOUT: Final = httpx.Timeout(5.0, connect=3.0)
_MAX_JWKS_BYTES: Final = 256 * 1024


class TenantKeyCache:
    """Public RSA keys of one tenant, by `kid`.

    `min_refresh_seconds` limits refreshes caused by unknown kids; `max_age_seconds` refreshes
    the whole set periodically so a retired key stops being accepted. `clock` is monotonic
    seconds (tests pass their own to move time without sleeping).
    """

    def __init__(
        self,
        authority_host: str,
        tenant_id: str,
        *,
        min_refresh_seconds: float = 60.0,
        max_age_seconds: float = 24 * 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.keys_url = f"{authority_host.rstrip('/')}/{tenant_id}/discovery/v2.0/keys"
        self._min_refresh = min_refresh_seconds
        self._max_age = max_age_seconds
        self._clock = clock
        self._keys: dict[str, RSAPublicKey] = {}
        self._fetched_at: float | None = None
        self._failed_at: float | None = None
        self._lock = asyncio.Lock()

    async def get(self, kid: str) -> RSAPublicKey | None:
        """The key named `kid`, or None if the authority does not publish it."""
        if self._is_stale():
            await self._refresh(reason="stale", force=True)
        key = self._keys.get(kid)
        if key is None and self._may_refresh_for_unknown_kid():
            await self._refresh(reason="unknown kid", force=False)
            key = self._keys.get(kid)
        return key

    def _is_stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._max_age

    def _may_refresh_for_unknown_kid(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._min_refresh

    async def _refresh(self, *, reason: str, force: bool) -> None:
        started = self._clock()
        async with self._lock:
            # Another request refreshed (or failed to) while this one waited: share its result,
            # so an outage costs the authority one request per wave, not one per caller.
            if self._fetched_at is not None and self._fetched_at >= started:
                return
            if self._failed_at is not None and self._failed_at >= started:
                raise ServiceUnavailable("The identity provider's signing keys are unavailable.")
            if not force and not self._may_refresh_for_unknown_kid():
                return
            try:
                self._keys = await self._fetch()
            except ServiceUnavailable:
                self._failed_at = self._clock()
                if not self._keys:
                    raise
                # Keep serving the keys we have; an authority blip must not lock devices out.
                _log.warning("signing keys not refreshed; using the cached set")
            self._fetched_at = self._clock()
            _log.info(
                "tenant signing keys loaded", extra={"keyCount": len(self._keys), "reason": reason}
            )

    async def _fetch(self) -> dict[str, RSAPublicKey]:
        try:
            async with httpx.AsyncClient(timeout=_FETCH_TIMEOUT, follow_redirects=False) as http:
                response = await http.get(self.keys_url, headers={"Accept": "application/json"})
        except httpx.HTTPError as error:
            raise ServiceUnavailable(
                "The identity provider's signing keys could not be fetched; retry later."
            ) from error
        if response.status_code != 200 or len(response.content) > _MAX_JWKS_BYTES:
            raise ServiceUnavailable(
                "The identity provider's signing keys could not be fetched; retry later."
            )
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
    if not isinstance(entry, Mapping) or entry.get("kty") != "RSA":
        return None
    if entry.get("use", "sig") != "sig" or not isinstance(entry.get("kid"), str):
        return None
    try:
        n = _b64url_int(entry["n"])
        e = _b64url_int(entry["e"])
        key = RSAPublicNumbers(e, n).public_key()
    except (KeyError, TypeError, ValueError):
        return None
    return key if key.key_size >= MIN_RSA_BITS else None


def _b64url_int(value: str) -> int:
    return int.from_bytes(b64url_decode(value), "big")
