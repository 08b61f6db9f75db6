"""A loopback App Service managed-identity endpoint (the protocol azure-identity speaks).

`GET {IDENTITY_ENDPOINT}?resource=R&api-version=2019-08-01` with header `X-IDENTITY-HEADER`
equal to `IDENTITY_HEADER` answers `{"access_token", "expires_on", "resource", "token_type"}`, as
App Service does. Tokens are HMAC-tagged opaque strings, so the fake Graph server can check that a
bearer token really came from here (`is_valid`) without sharing state beyond the key.

`LoopbackServer` runs an aiohttp app on 127.0.0.1 in its own thread and event loop, so the same
fake serves pytest (any loop), the benchmark and the `make run` demo.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets
import socket
import threading
import time
from types import TracebackType
from typing import Final, Self

from aiohttp import web

HOST: Final = "127.0.0.1"
API_VERSION: Final = "2019-08-01"
TOKEN_LIFETIME_SECONDS: Final = 3600


class LoopbackServer:
    """An aiohttp application served on loopback from a background thread."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as error:  # reported to the starting thread
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop_site())
            loop.close()

        self._thread = threading.Thread(target=serve, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not ready.wait(30):
            raise TimeoutError(f"{type(self).__name__} did not start")
        if failure:
            raise failure[0]
        return self

    async def _start_site(self) -> None:
        # Graph pages of 999 users are large; keep-alive like a real service.
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        # Bind here (port 0 = the OS picks) so no other process can take the port in between.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()

    async def _stop_site(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(30)
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


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
