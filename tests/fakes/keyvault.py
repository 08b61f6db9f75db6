"""A loopback Azure Key Vault (keys) that azure-keyvault-keys talks to unmodified, over TLS.

The SDK insists on https and on a challenge whose resource is a *parent domain* of the vault
(`myvault.vault.azure.net` under `https://vault.azure.net`; an exact host such as 127.0.0.1 is
refused by `_validate_challenge_resource`). So the fake keeps Azure's names: the vault is
`https://<name>.vault.azure.net`, its challenge names `https://vault.azure.net`, and the product
reaches it through `HTTPS_PROXY`, a CONNECT proxy on loopback that tunnels only that host to the
fake's TLS port. Its self-signed certificate is trusted through `SSL_CERT_FILE`, as a corporate
CA would be; nothing leaves the machine.

What it speaks (Key Vault REST, as the SDK sends it):
    any request without a valid bearer token    -> 401 + WWW-Authenticate challenge
    GET  /keys/{name}[/{version}]               -> {"key": JWK (kid, kty, n, e), "attributes"}
    POST /keys/{name}/{version}/sign            {"alg": "RS256", "value": b64url(SHA-256 digest)}
                                                -> {"kid", "value": b64url(signature)}
Tokens must come from the given `FakeManagedIdentity` for resource `https://vault.azure.net`.
The RSA private keys stay in this object; only n and e are ever served.

Knobs and counters for tests: `keys_read[name]`, `signatures[name]`, `challenges`;
`throttle_next_signs(n)` answers 429 + Retry-After to the next n signs; `unavailable = True`
answers 503 to everything (a regional outage).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import secrets
import ssl
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from devtools.fakes.identity import FakeManagedIdentity
from devtools.loopback import HOST, LoopbackServer
from tests.support.settings import TENANT_ID
from tests.support.tls import self_signed_certificate

RESOURCE: Final = "https://vault.azure.net"
AUTHORITY: Final = "https://login.microsoftonline.com"
THROTTLE_RETRY_AFTER_SECONDS: Final = 1
_SHA256_BYTES: Final = 32


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _uint(value: int) -> str:
    return _b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def _error(status: int, code: str, message: str, **headers: str) -> web.Response:
    body = {"error": {"code": code, "message": message}}
    return web.json_response(body, status=status, headers=headers)


class FakeKeyVault(LoopbackServer):
    """`https://<name>.vault.azure.net` on loopback, reached through `proxy_url`."""

    def __init__(self, identity: FakeManagedIdentity, folder: Path, *, tenant_id: str = TENANT_ID):
        super().__init__()
        self.identity = identity
        self.tenant_id = tenant_id
        self.host = f"cmboot-test-{secrets.token_hex(4)}.vault.azure.net"
        certificate = self_signed_certificate(folder, self.host, dns_names=[self.host])
        self.certificate_file = certificate.cert
        self._tls = certificate.server_context()
        certificate.key.unlink()  # loaded; the server's TLS key need not stay on disk
        self._keys: dict[str, dict[str, rsa.RSAPrivateKey]] = {}  # name -> version -> key
        self._latest: dict[str, str] = {}
        self._lock = threading.Lock()
        self._proxy: asyncio.Server | None = None
        self.proxy_port = 0
        self.keys_read: Counter[str] = Counter()
        self.signatures: Counter[str] = Counter()
        self.challenges = 0
        self.throttled = 0
        self.refused_tunnels: list[str] = []
        self.unavailable = False
        self._throttle_signs = 0

    # -- what tests use ------------------------------------------------------------------------
    @property
    def vault_url(self) -> str:
        return f"https://{self.host}"

    @property
    def proxy_url(self) -> str:
        return f"http://{HOST}:{self.proxy_port}"

    def environment(self) -> dict[str, str]:
        """How the app reaches the vault: the proxy for https, and trust in the fake's CA."""
        return {"HTTPS_PROXY": self.proxy_url, "SSL_CERT_FILE": str(self.certificate_file)}

    def create_key(self, name: str, bits: int = 2048) -> str:
        """A new version of RSA key `name` (the latest from now on); returns its key id."""
        version = uuid.uuid4().hex
        with self._lock:
            self._keys.setdefault(name, {})[version] = rsa.generate_private_key(
                public_exponent=65537, key_size=bits
            )
            self._latest[name] = version
        return self.key_id(name, version)

    def key_id(self, name: str, version: str | None = None) -> str:
        return f"{self.vault_url}/keys/{name}" + (f"/{version}" if version else "")

    def public_key(self, key_id: str) -> rsa.RSAPublicKey:
        name, version = key_id.removeprefix(self.vault_url + "/keys/").split("/")
        return self._keys[name][version].public_key()

    def throttle_next_signs(self, count: int) -> None:
        with self._lock:
            self._throttle_signs = count

    # -- server --------------------------------------------------------------------------------
    def ssl_context(self) -> ssl.SSLContext:
        return self._tls

    async def _start_site(self) -> None:
        await super()._start_site()
        self._proxy = await asyncio.start_server(self._tunnel, HOST, 0)
        self.proxy_port = int(self._proxy.sockets[0].getsockname()[1])

    async def _stop_site(self) -> None:
        if self._proxy is not None:
            self._proxy.close()
        await super()._stop_site()

    async def _tunnel(self, client: asyncio.StreamReader, to_client: asyncio.StreamWriter) -> None:
        """HTTP CONNECT to this vault's host only; anything else is refused (403)."""
        try:
            head = await client.readuntil(b"\r\n\r\n")
            method, target, _ = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ", 2)
            if method != "CONNECT" or target != f"{self.host}:443":
                self.refused_tunnels.append(f"{method} {target}")
                to_client.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            server, to_server = await asyncio.open_connection(HOST, self.port)
            to_client.write(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            await asyncio.gather(_pipe(client, to_server), _pipe(server, to_client))
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        except ValueError:  # a malformed request line
            to_client.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        finally:
            with contextlib.suppress(ConnectionError):
                to_client.close()

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/keys/{name}", self._get_key)
        app.router.add_get("/keys/{name}/", self._get_key)
        app.router.add_get("/keys/{name}/{version}", self._get_key)
        app.router.add_post("/keys/{name}/{version}/sign", self._sign)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """api-version, the bearer challenge and an outage, before any key operation."""
        if not request.query.get("api-version"):
            return _error(400, "BadParameter", "api-version is required")
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not self.identity.is_valid(token, RESOURCE):
            self.challenges += 1
            challenge = (
                f'Bearer authorization="{AUTHORITY}/{self.tenant_id}", resource="{RESOURCE}"'
            )
            return _error(
                401,
                "Unauthorized",
                "AKV10000: Request is missing a Bearer or PoP token.",
                **{"WWW-Authenticate": challenge},
            )
        if self.unavailable:  # after the challenge: the client has its token by then
            return _error(503, "ServiceUnavailable", "The service is unavailable.")
        response: web.StreamResponse = await handler(request)
        return response

    def _find(self, request: web.Request) -> tuple[str, str, rsa.RSAPrivateKey] | None:
        name = request.match_info["name"]
        with self._lock:
            version = request.match_info.get("version") or self._latest.get(name, "")
            key = self._keys.get(name, {}).get(version)
        return None if key is None else (name, version, key)

    def _not_found(self, request: web.Request) -> web.Response:
        return _error(404, "KeyNotFound", f"A key with (name/id) {request.path} was not found.")

    async def _get_key(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if found is None:
            return self._not_found(request)
        name, version, key = found
        self.keys_read[name] += 1
        numbers = key.public_key().public_numbers()
        created = int(time.time()) - 60
        return web.json_response(
            {
                "key": {
                    "kid": self.key_id(name, version),
                    "kty": "RSA",
                    "key_ops": ["sign", "verify"],
                    "n": _uint(numbers.n),
                    "e": _uint(numbers.e),
                },
                "attributes": {
                    "enabled": True,
                    "created": created,
                    "updated": created,
                    "recoveryLevel": "Recoverable+Purgeable",
                },
            }
        )

    async def _sign(self, request: web.Request) -> web.Response:
        found = self._find(request)
        if found is None:
            return self._not_found(request)
        name, version, key = found
        with self._lock:
            throttle = self._throttle_signs > 0
            self._throttle_signs -= int(throttle)
        if throttle:
            self.throttled += 1
            return _error(
                429,
                "Throttled",
                "Request was not processed because too many requests were received.",
                **{"Retry-After": str(THROTTLE_RETRY_AFTER_SECONDS)},
            )
        try:
            body = await request.json()
            digest = _b64url_decode(body["value"])
            algorithm = body["alg"]
        except (ValueError, KeyError, TypeError, binascii.Error):
            return _error(400, "BadParameter", "alg and value are required")
        if algorithm != "RS256" or len(digest) != _SHA256_BYTES:
            return _error(400, "BadParameter", "RS256 signs a 32-byte SHA-256 digest")
        signature = key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
        self.signatures[name] += 1
        return web.json_response({"kid": self.key_id(name, version), "value": _b64url(signature)})


async def _pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    try:
        while chunk := await source.read(65536):
            sink.write(chunk)
            await sink.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(ConnectionError, RuntimeError):
            sink.write_eof()
