"""A loopback Application Insights ingestion endpoint (`POST /v2.1/track`), over TLS.

The Azure Monitor exporter refuses to send an Entra bearer token over plain http, so this fake
serves https with a throw-away self-signed certificate for 127.0.0.1; a client trusts it through
`ca_file` (e.g. `REQUESTS_CA_BUNDLE`). Every request is kept: its Authorization header, raw body
and the envelopes it carried.
"""

from __future__ import annotations

import gzip
import json
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from aiohttp import web

from devtools.loopback import HOST, LoopbackServer
from tests.support.tls import self_signed_certificate


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
        self._certificate = self_signed_certificate(Path(self._folder.name))
        self.ca_file = str(self._certificate.cert)

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
        return self._certificate.server_context()

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
