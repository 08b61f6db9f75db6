"""`GET /api/jwks/signed`: the published JWK Set as a compact JWS signed by the current key.

A device that pinned key K accepts a new set only when it verifies with K, so a rotation
(README "Rotating the bundle-signing key") needs no trust on first use after the first setup.

Lifetime (`exp` = `iat` + 24 h): long enough that a device whose clock is hours off, or that
reads the set through a cache, still accepts it; short enough that a captured old set, say one
still listing a retired key, cannot be replayed to devices for longer than a day (devices also
refuse a set older than the one they pinned). One signature per process and hour, not per
request: with Key Vault every signature counts against the vault's per-10-s sign limit, and a set
signed at most an hour ago has at least 23 h left. `iat` is the start of the hour, so every
instance serves the same `iat` for the same keys and a device moving between instances does not
meet a set older than the one it pinned.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Final

from shared.bundles._signing import SigningKeys, get_signing_keys, sign_compact_jws
from shared.per_loop import PerLoop

JWKS_TYPE: Final = "cmboot-jwks+jwt"
SIGNED_JWKS_LIFETIME_SECONDS: Final = 24 * 3600
RESIGN_AFTER_SECONDS: Final = 3600


async def sign_jwks(keys: SigningKeys, *, now: int) -> str:
    """`keys.jwks()` as a compact JWS: claims `keys`, `iat`, `exp`; kid = the current key's."""
    claims = {**keys.jwks(), "iat": now, "exp": now + SIGNED_JWKS_LIFETIME_SECONDS}
    return await sign_compact_jws(claims, keys.current, typ=JWKS_TYPE)


@dataclass(slots=True)
class _Signed:
    keys: SigningKeys
    jws: str
    signed_at: int


class SignedJwksCache:
    """The last signed set of one event loop; re-signed each hour or when the keys changed."""

    def __init__(self) -> None:
        self._signed: _Signed | None = None
        self._lock = asyncio.Lock()

    async def get(self, keys: SigningKeys, now: int) -> str:
        hour = now - now % RESIGN_AFTER_SECONDS
        async with self._lock:  # concurrent first callers share one signature
            signed = self._signed
            if signed is None or signed.keys is not keys or signed.signed_at != hour:
                signed = _Signed(keys, await sign_jwks(keys, now=hour), hour)
                self._signed = signed
            return signed.jws


_caches: PerLoop[SignedJwksCache] = PerLoop(SignedJwksCache)


async def signed_jwks() -> str:
    """The process's signing keys' JWK Set, signed by the current key (cached, see above)."""
    keys = await get_signing_keys()
    return await _caches.get().get(keys, int(time.time()))
