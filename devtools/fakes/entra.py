"""A loopback Entra ID issuer: a real HTTP server with real RSA keys that mints real JWS tokens.

It serves, for any tenant in the path, what the product fetches from `AAD_AUTHORITY_HOST`:
    /{tenant}/v2.0/.well-known/openid-configuration
    /{tenant}/discovery/v2.0/keys      (v2 key set)
    /{tenant}/discovery/keys           (v1 key set; the same keys, as in Entra)
and mints access tokens shaped like Entra's (v1: iss https://sts.windows.net/{tid}/, appid,
aud = App ID URI; v2: iss {authority}/{tid}/v2.0, azp, aud = server app id).

    with EntraIssuer() as issuer:
        env["AAD_AUTHORITY_HOST"] = issuer.authority_host
        token = issuer.mint_access_token(version=1)

The tests' fixtures `entra_issuer` (session) and `fresh_entra_issuer` (per test, for rotation
and outages) are in tests/support/issuer.py; import them into a conftest.py.
"""

from __future__ import annotations

import base64
import hashlib
import re
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import jwt
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from devtools.loopback import LoopbackServer
from devtools.tenant import CLIENT_APP_ID, RESOURCE_URI, SERVER_APP_ID, TENANT_ID

ADMIN_ROLE: Final = "Bootstrap.Admin"
DEFAULT_SCOPE: Final = "Bundle.Request"  # the scope the server app exposes to devices
TOKEN_LIFETIME_SECONDS: Final = 3600
DEMO_CONSOLE_SCOPE: Final = "Console.Read"
_DEMO_TOKEN_PATH = re.compile(r"^/(?P<tenant>[A-Za-z0-9.-]+)/demo/admin-token$")
_PATH = re.compile(
    r"^/(?P<tenant>[A-Za-z0-9.-]+)/(?:(?P<oidc>v2\.0/\.well-known/openid-configuration)"
    r"|(?P<keys>discovery/(?:v2\.0/)?keys))$"
)


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An RSA key pair with its `kid`, as Entra publishes it (n, e; no private parts)."""

    kid: str
    private_key: rsa.RSAPrivateKey

    @classmethod
    def generate(cls, bits: int = 2048) -> SigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        # Entra's kids look like base64url x5t thumbprints: random ones are just as opaque.
        kid = _b64url(hashlib.sha1(uuid.uuid4().bytes).digest())  # noqa: S324 (an opaque id)
        return cls(kid=kid, private_key=key)

    def public_jwk(self) -> dict[str, str]:
        exported = RSAAlgorithm.to_jwk(self.private_key.public_key(), as_dict=True)
        return {"kty": "RSA", "use": "sig", "kid": self.kid, "n": exported["n"], "e": exported["e"]}


class EntraIssuer(LoopbackServer):
    """The loopback issuer. Thread-safe: the HTTP server runs in a daemon thread."""

    def __init__(self, port: int = 0) -> None:
        """`port` 0 lets the OS pick; the `make run` demo asks for AAD_AUTHORITY_HOST's port."""
        super().__init__(port)
        self._lock = threading.Lock()
        self.current_key = SigningKey.generate()
        self._published: list[SigningKey] = [self.current_key]
        self.key_fetches = 0
        self.keys_available = True
        # Set by `serve_demo_admin_tokens`: the console's Development sign-in.
        self._demo_admin: dict[str, Any] | None = None

    @property
    def authority_host(self) -> str:
        return self.base_url

    # -- keys --------------------------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        with self._lock:
            return {"keys": [key.public_jwk() for key in self._published]}

    def published_keys(self) -> list[SigningKey]:
        with self._lock:
            return list(self._published)

    def publish_key(self, key: SigningKey | None = None) -> SigningKey:
        """Publish an extra key (not yet used for minting); returns it."""
        key = key or SigningKey.generate()
        with self._lock:
            self._published.append(key)
        return key

    def rotate(self, *, keep_old: bool = True, to: SigningKey | None = None) -> SigningKey:
        """Mint with a new key from now on (`to`, if already published in advance, as Entra
        does; else a fresh one, published now); optionally retire the old key."""
        new_key = to or SigningKey.generate()
        with self._lock:
            if not keep_old:
                self._published = [k for k in self._published if k is not self.current_key]
            if new_key not in self._published:
                self._published.append(new_key)
            self.current_key = new_key
        return new_key

    def _count_key_fetch(self) -> None:
        with self._lock:
            self.key_fetches += 1

    # -- server ------------------------------------------------------------------------------
    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/{path:.*}", self._get)
        app.router.add_post("/{path:.*}", self._post)
        return app

    def serve_demo_admin_tokens(self, *, audience: str, admin_role: str = ADMIN_ROLE) -> None:
        """Answer `POST /{tenant}/demo/admin-token` with a signed-in admin's access token (the
        console's Development sign-in: MSAL.js needs an https authority, this issuer is http).
        Loopback only, like the issuer itself; the product trusts it only in Development."""
        self._demo_admin = {"audience": audience, "roles": (admin_role,)}

    async def _post(self, request: web.Request) -> web.Response:
        match = _DEMO_TOKEN_PATH.match(request.rel_url.raw_path)
        if match is None or self._demo_admin is None:
            return web.json_response({"error": "not_found"}, status=404)
        token = self.sign(
            _apply(
                self.access_token_claims(
                    client_app_id=self._demo_admin["audience"],
                    roles=self._demo_admin["roles"],
                    tenant_id=match["tenant"],
                    audience=self._demo_admin["audience"],
                    scope=DEMO_CONSOLE_SCOPE,
                ),
                {"name": "Demo Admin", "preferred_username": "admin@demo.contoso.example"},
            )
        )
        body = {"token_type": "Bearer", "access_token": token, "expires_in": TOKEN_LIFETIME_SECONDS}
        # The console runs on the host's origin, another port: a simple CORS request.
        return web.json_response(body, headers={"Access-Control-Allow-Origin": "*"})

    async def _get(self, request: web.Request) -> web.Response:
        match = _PATH.match(request.rel_url.raw_path)
        if match is None:
            return web.json_response({"error": "not_found"}, status=404)
        if match["oidc"]:
            return web.json_response(_openid_configuration(self, match["tenant"]))
        self._count_key_fetch()
        if not self.keys_available:
            return web.json_response({"error": "temporarily_unavailable"}, status=503)
        return web.json_response(self.jwks())

    # -- tokens ------------------------------------------------------------------------------
    def v2_issuer(self, tenant_id: str = TENANT_ID) -> str:
        return f"{self.authority_host}/{tenant_id}/v2.0"

    @staticmethod
    def v1_issuer(tenant_id: str = TENANT_ID) -> str:
        return f"https://sts.windows.net/{tenant_id}/"

    def access_token_claims(
        self,
        *,
        version: int = 2,
        client_app_id: str = CLIENT_APP_ID,
        roles: tuple[str, ...] | list[str] = (),
        oid: str | None = None,
        tenant_id: str | None = None,
        audience: str | None = None,
        scope: str | None = DEFAULT_SCOPE,
    ) -> dict[str, Any]:
        """Claims of an Entra access token (before any overrides)."""
        tid = tenant_id or TENANT_ID
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience or (SERVER_APP_ID if version == 2 else RESOURCE_URI),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "oid": oid or str(uuid.uuid4()),
            "sub": _b64url(uuid.uuid4().bytes),
            "tid": tid,
            "uti": _b64url(uuid.uuid4().bytes),
        }
        if version == 2:
            claims.update(iss=self.v2_issuer(tid), azp=client_app_id, azpacr="0", ver="2.0")
        elif version == 1:
            claims.update(iss=self.v1_issuer(tid), appid=client_app_id, appidacr="0", ver="1.0")
        else:
            raise ValueError("version is 1 or 2")
        if scope:
            claims["scp"] = scope
        if roles:
            claims["roles"] = list(roles)
        return claims

    def mint_access_token(
        self,
        *,
        version: int = 2,
        client_app_id: str = CLIENT_APP_ID,
        roles: tuple[str, ...] | list[str] = (),
        oid: str | None = None,
        tenant_id: str | None = None,
        audience: str | None = None,
        key: SigningKey | None = None,
        headers: Mapping[str, Any] | None = None,
        **overrides: Any,
    ) -> str:
        """An access token for the server app. `overrides` set claims; a value of None drops it."""
        claims = self.access_token_claims(
            version=version,
            client_app_id=client_app_id,
            roles=roles,
            oid=oid,
            tenant_id=tenant_id,
            audience=audience,
        )
        return self.sign(_apply(claims, overrides), key=key, headers=headers)

    def mint_admin_token(self, roles: tuple[str, ...] | list[str] = (ADMIN_ROLE,)) -> str:
        return self.mint_access_token(roles=roles)

    def mint_id_token(self, *, audience: str = CLIENT_APP_ID, **overrides: Any) -> str:
        """A v2 ID token (what sign-in returns to the client app): not an access token."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.v2_issuer(),
            "iat": now,
            "nbf": now,
            "exp": now + TOKEN_LIFETIME_SECONDS,
            "nonce": _b64url(uuid.uuid4().bytes),
            "oid": str(uuid.uuid4()),
            "sub": _b64url(uuid.uuid4().bytes),
            "tid": TENANT_ID,
            "ver": "2.0",
            "preferred_username": "device-user@contoso.onmicrosoft.com",
        }
        return self.sign(_apply(claims, overrides))

    def sign(
        self,
        claims: Mapping[str, Any],
        *,
        key: SigningKey | None = None,
        headers: Mapping[str, Any] | None = None,
    ) -> str:
        """RS256 JWS over `claims` with `key` (default: the current key); `headers` extend it."""
        key = key or self.current_key
        header = {"typ": "JWT", "kid": key.kid, **(headers or {})}
        return jwt.encode(dict(claims), key.private_key, algorithm="RS256", headers=header)


def _apply(claims: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    for name, value in overrides.items():
        if value is None:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def _openid_configuration(issuer: EntraIssuer, tenant: str) -> dict[str, Any]:
    base = f"{issuer.authority_host}/{tenant}"
    return {
        "issuer": f"{base}/v2.0",
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
        "subject_types_supported": ["pairwise"],
    }


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
