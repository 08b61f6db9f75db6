"""A loopback Application Insights ingestion endpoint (`POST /v2.1/track`), over TLS.

The Azure Monitor exporter refuses to send an Entra bearer token over plain http, so this fake
serves https with a throw-away self-signed certificate for 127.0.0.1; a client trusts it through
`ca_file` (e.g. `REQUESTS_CA_BUNDLE`). Every request is kept: its Authorization header, raw body
and the envelopes it carried.
"""

from __future__ import annotations

import datetime
import gzip
import ipaddress
import json
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.loopback import HOST, LoopbackServer


@dataclass(frozen=True, slots=True)
class TrackRequest:
    authorization: str | None
    body: str
    envelopes: list[dict[str, Any]]


class FakeIngestion(LoopbackServer):
    """Application Insights ingestion: accepts every envelope and remembers it."""

    PATH: Final = "/v2.1/track"

    def __init__(self) -> None:
        super().__init__()
        self.requests: list[TrackRequest] = []
        self._folder = tempfile.TemporaryDirectory(prefix="fake-ingestion-")
        self.ca_file, self._key_file = _self_signed_certificate(Path(self._folder.name))

    def connection_string(self, instrumentation_key: str) -> str:
        return (
            f"InstrumentationKey={instrumentation_key};"
            f"IngestionEndpoint=https://{HOST}:{self.port}/;"
            f"LiveEndpoint=https://{HOST}:{self.port}/"
        )

    def envelopes(self) -> list[dict[str, Any]]:
        return [envelope for request in self.requests for envelope in request.envelopes]

    def messages(self) -> list[dict[str, Any]]:
        """`baseData` of the log records (MessageData) received so far."""
        return [
            e["data"]["baseData"]
            for e in self.envelopes()
            if e.get("data", {}).get("baseType") == "MessageData"
        ]

    def stop(self) -> None:
        super().stop()
        self._folder.cleanup()

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/{path:.*}", self._track)
        return app

    def ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, self._key_file)
        return context

    async def _track(self, request: web.Request) -> web.Response:
        if request.path.replace("//", "/") != self.PATH:
            return web.json_response({"error": f"no route {request.path}"}, status=404)
        raw = await request.read()
        if request.headers.get("Content-Encoding", "").lower() == "gzip":
            raw = gzip.decompress(raw)
        body = raw.decode("utf-8")
        parsed = json.loads(body)
        envelopes = parsed if isinstance(parsed, list) else [parsed]
        self.requests.append(TrackRequest(request.headers.get("Authorization"), body, envelopes))
        count = len(envelopes)
        return web.json_response({"itemsReceived": count, "itemsAccepted": count, "errors": []})


def _self_signed_certificate(folder: Path) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "ingestion.crt", folder / "ingestion.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return str(cert_file), str(key_file)
