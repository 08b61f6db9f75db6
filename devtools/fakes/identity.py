"""A loopback App Service managed-identity endpoint (the protocol azure-identity speaks).

`GET {IDENTITY_ENDPOINT}?resource=R&api-version=2019-08-01` with header `X-IDENTITY-HEADER`
equal to `IDENTITY_HEADER` answers `{"access_token", "expires_on", "resource", "token_type"}`, as
App Service does. Tokens are HMAC-tagged opaque strings, so the fake Graph server can check that a
bearer token really came from here (`is_valid`) without sharing state beyond the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from typing import Final

from aiohttp import web

from devtools.loopback import LoopbackServer

API_VERSION: Final = "2019-08-01"
TOKEN_LIFETIME_SECONDS: Final = 3600


class FakeManagedIdentity(LoopbackServer):
    """App Service managed-identity token endpoint at `{base_url}/msi/token`."""

    PATH: Final = "/msi/token"

    def __init__(self, port: int = 0, *, header: str | None = None, path: str = PATH) -> None:
        super().__init__(port)
        self.path = path
        self.header = header or secrets.token_urlsafe(16)
        self._key = secrets.token_bytes(32)
        self.requests = 0
        self.resources: list[str] = []

    @property
    def endpoint(self) -> str:
        return self.base_url + self.path

    def environment(self) -> dict[str, str]:
        """The app settings App Service would set: IDENTITY_ENDPOINT and IDENTITY_HEADER."""
        return {"IDENTITY_ENDPOINT": self.endpoint, "IDENTITY_HEADER": self.header}

    def mint(self, resource: str) -> str:
        expires = int(time.time()) + TOKEN_LIFETIME_SECONDS
        claims = f"{resource}|{expires}|{secrets.token_hex(8)}"
        body = base64.urlsafe_b64encode(claims.encode()).decode()
        return f"mi.{body}.{self._tag(body)}"

    def is_valid(self, token: str, resource: str) -> bool:
        """True for an unexpired token this endpoint minted for `resource`."""
        try:
            prefix, body, tag = token.split(".")
            granted, expires, _ = base64.urlsafe_b64decode(body).decode().split("|")
        except ValueError:
            return False
        return (
            prefix == "mi"
            and hmac.compare_digest(tag, self._tag(body))
            and granted.rstrip("/") == resource.rstrip("/")
            and int(expires) > time.time()
        )

    def _tag(self, body: str) -> str:
        return hmac.new(self._key, body.encode(), hashlib.sha256).hexdigest()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get(self.path, self._token)
        return app

    async def _token(self, request: web.Request) -> web.Response:
        self.requests += 1
        if request.headers.get("X-IDENTITY-HEADER") != self.header:
            return web.json_response(
                {"error": "invalid_request", "error_description": "X-IDENTITY-HEADER is wrong"},
                status=401,
            )
        resource = request.query.get("resource", "")
        if request.query.get("api-version") != API_VERSION or not resource:
            return web.json_response(
                {"error": "invalid_request", "error_description": "resource and api-version"},
                status=400,
            )
        self.resources.append(resource)
        return web.json_response(
            {
                "access_token": self.mint(resource),
                "expires_on": str(int(time.time()) + TOKEN_LIFETIME_SECONDS),
                "resource": resource,
                "token_type": "Bearer",
            }
        )
