"""Validation of Entra ID access tokens presented to this API (RFC 6750 bearer tokens).

Rules, in order: a bearer header; at most 16 KiB; a JWS header with `alg` RS256 and a `kid`, no
`crit`; a key the tenant publishes under that `kid` (nothing else in the header is honoured);
signature; `exp`, `nbf`, `iat` present and within 5 minutes of skew; `aud` is the server app id
or its App ID URI; `ver` 1.0 with the v1 issuer of the authority's cloud (global cloud:
`https://sts.windows.net/{tenant}/`; see `_clouds.py`) or 2.0 with `{authority}/{tenant}/v2.0`;
`tid` the configured tenant; `oid` present; and it must be an access token: `azp` (v2) or
`appid` (v1) names the calling app and `scp` or `roles` grants something.
An ID token has neither `scp`/`roles` nor `azp`/`appid` (and its `aud` is the client app), so
it fails here rather than being mistaken for a grant.
"""

from __future__ import annotations

import binascii
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt

from shared.auth._clouds import v1_issuer
from shared.auth._keys import TenantKeyCache
from shared.b64url import b64url_decode
from shared.errors import Unauthorized
from shared.settings import Settings

_log = logging.getLogger(__name__)

MAX_TOKEN_BYTES: Final = 16 * 1024
CLOCK_SKEW_SECONDS: Final = 300
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]+")
_REQUIRED_CLAIMS: Final = ("exp", "nbf", "iat", "iss", "aud", "tid", "oid", "ver")


@dataclass(frozen=True, slots=True)
class Caller:
    """Who called, from a validated access token."""

    tenant_id: str
    object_id: str
    client_app_id: str
    roles: frozenset[str]
    token_version: str  # "1.0" or "2.0"
    # Delegated scopes (`scp`, space-separated); empty for an app-only token.
    scopes: frozenset[str] = frozenset()

    @property
    def is_delegated(self) -> bool:
        """A user's token (it carries `scp`), not an application's own (app-only) token."""
        return bool(self.scopes)


class TokenValidator:
    """Validates bearer tokens for one tenant and API; keys come from `keys`."""

    def __init__(
        self,
        *,
        tenant_id: str,
        audiences: frozenset[str],
        authority_host: str,
        keys: TenantKeyCache,
    ) -> None:
        self.tenant_id = tenant_id.lower()
        self._audiences = audiences
        self._issuers = {"2.0": f"{authority_host.rstrip('/')}/{self.tenant_id}/v2.0"}
        v1 = v1_issuer(authority_host, self.tenant_id)
        if v1 is None:
            _log.warning(
                "AAD_AUTHORITY_HOST %s is not a known Entra cloud: v1 tokens are refused, "
                "v2 tokens are accepted",
                authority_host,
            )
        else:
            self._issuers["1.0"] = v1
        self._keys = keys

    @classmethod
    def from_settings(cls, settings: Settings, **key_cache_options: Any) -> TokenValidator:
        keys = TenantKeyCache(settings.authority_host, settings.tenant_id, **key_cache_options)
        return cls(
            tenant_id=settings.tenant_id,
            audiences=frozenset({settings.server_app_id, settings.resource_uri}),
            authority_host=settings.authority_host,
            keys=keys,
        )

    async def validate_header(self, authorization: str | None) -> Caller:
        """The caller behind an `Authorization` header value; `Unauthorized` if none or invalid."""
        if not authorization or not authorization.strip():
            raise Unauthorized("A bearer token is required.", token_present=False)
        scheme, _, token = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise Unauthorized("The Authorization header must be 'Bearer <token>'.")
        return await self.validate(token.strip())

    async def validate(self, token: str) -> Caller:
        try:
            if len(token) > MAX_TOKEN_BYTES:
                raise Unauthorized("The token is too large.")
            key = await self._signing_key(token)
            return self._caller(self._verified_claims(token, key))
        except Unauthorized as refused:
            # The reason only: never the token or its claims.
            _log.info("bearer token refused", extra={"reason": refused.detail})
            raise

    async def _signing_key(self, token: str) -> Any:
        header = _unverified_header(token)
        if header.get("alg") != "RS256":
            raise Unauthorized("The token must be signed with RS256.")
        if "crit" in header:
            raise Unauthorized("The token has critical header parameters this API does not know.")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise Unauthorized("The token has no key id.")
        key = await self._keys.get(kid)
        if key is None:
            raise Unauthorized("The token was not signed by a key of the tenant.")
        return key

    def _verified_claims(self, token: str, key: Any) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=["RS256"],
                audience=sorted(self._audiences),
                leeway=CLOCK_SKEW_SECONDS,
                options={"require": list(_REQUIRED_CLAIMS), "verify_iss": False},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired.") from None
        except jwt.ImmatureSignatureError:
            raise Unauthorized("The token is not valid yet.") from None
        except jwt.InvalidAudienceError:
            raise Unauthorized("The token is not for this API (aud).") from None
        except jwt.MissingRequiredClaimError as error:
            raise Unauthorized(f"The token lacks the '{error.claim}' claim.") from None
        except jwt.InvalidSignatureError:
            raise Unauthorized("The token's signature does not verify.") from None
        except jwt.PyJWTError:
            raise Unauthorized("The token is not valid.") from None
        return claims

    def _caller(self, claims: Mapping[str, Any]) -> Caller:
        version = claims["ver"]
        expected_issuer = self._issuers.get(version) if isinstance(version, str) else None
        if expected_issuer is None or claims["iss"] != expected_issuer:
            raise Unauthorized("The token's issuer is not the tenant's (iss/ver).")
        tenant = claims["tid"]
        if not isinstance(tenant, str) or tenant.lower() != self.tenant_id:
            raise Unauthorized("The token is for another tenant (tid).")
        client_app = claims.get("azp" if version == "2.0" else "appid")
        if not isinstance(client_app, str) or not client_app:
            raise Unauthorized("The token names no client application; is it an ID token?")
        roles = _string_list(claims.get("roles"))
        if not claims.get("scp") and not roles:
            raise Unauthorized("The token grants no scope or role; is it an ID token?")
        object_id = claims["oid"]
        if not isinstance(object_id, str) or not object_id:
            raise Unauthorized("The token's 'oid' claim is malformed.")
        return Caller(
            tenant_id=tenant.lower(),
            object_id=object_id.lower(),
            client_app_id=client_app.lower(),
            roles=frozenset(roles),
            token_version=version,
            scopes=frozenset(_scopes(claims.get("scp"))),
        )


def _unverified_header(token: str) -> dict[str, Any]:
    """The JOSE header, read only to pick the key; PyJWT re-reads all of it when verifying.

    Decoded here rather than with `jwt.get_unverified_header`, which would validate every
    segment a second time (PyJWT checks base64url character by character in Python).
    """
    segments = token.split(".")
    if len(segments) != 3 or not _BASE64URL.fullmatch(segments[0]):
        raise Unauthorized("The token is not a well-formed JWS.")
    encoded = segments[0]
    try:
        header = json.loads(b64url_decode(encoded))
    except (ValueError, binascii.Error):
        raise Unauthorized("The token is not a well-formed JWS.") from None
    if not isinstance(header, dict):
        raise Unauthorized("The token is not a well-formed JWS.")
    return header


def _scopes(value: object) -> list[str]:
    return value.split() if isinstance(value, str) else []


def _string_list(value: object) -> list[str]:
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return value
    return []
