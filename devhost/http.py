"""The HTTP front end: `/api/...` routes, the admin endpoints and the Event Grid webhook.

Like the Functions host it adds `X-Forwarded-For` (the peer address, appended to any value the
client sent, as Azure's front end does: the last entry is the one to trust), caps bodies at 100 MB
(413) and header blocks at 32 KiB (431, Kestrel's default), answers 404 for an unknown route and
405 for a known route asked with another method.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Final, Protocol

from aiohttp import web
from azure.functions import meta
from multidict import CIMultiDict

from devhost.app_index import HTTP_TRIGGER, FunctionSpec
from devhost.eventgrid import EventGridWebhook
from devhost.invoke import InvocationError, Invoker
from devhost.routes import RouteTable, compile_route

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 100 * 1024 * 1024
MAX_HEADER_BYTES: Final = 32 * 1024
# aiohttp must parse a header before we can answer 431 for it: let single fields be large.
PARSER_LIMITS: Final = {"max_field_size": 4 * MAX_HEADER_BYTES, "max_line_size": 8190}


class AdminRunner(Protocol):
    def state(self) -> str: ...

    def run_now(self, spec: FunctionSpec, payload: str) -> None: ...


def _problem(status: int, detail: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "title": detail, "status": status, "detail": detail},
        status=status,
        content_type="application/problem+json",
    )


class HttpFrontEnd:
    def __init__(
        self,
        specs: Mapping[str, FunctionSpec],
        invoker: Invoker,
        admin: AdminRunner,
        eventgrid: EventGridWebhook,
        *,
        route_prefix: str,
    ) -> None:
        self._specs = specs
        self._invoker = invoker
        self._admin = admin
        self._eventgrid = eventgrid
        self._prefix = f"/{route_prefix}/" if route_prefix else "/"
        self.routes = RouteTable(
            compile_route(spec.name, str(spec.trigger.get("route") or spec.name), _methods(spec))
            for spec in specs.values()
            if spec.trigger_type == HTTP_TRIGGER
        )

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, handler_args=PARSER_LIMITS)
        app.router.add_route("*", "/{tail:.*}", self.dispatch)
        return app

    def url(self, base_url: str, spec: FunctionSpec) -> str:
        return base_url + self._prefix + str(spec.trigger.get("route") or spec.name).strip("/")

    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        header_bytes = sum(len(k) + len(v) + 4 for k, v in request.raw_headers)
        if header_bytes > MAX_HEADER_BYTES:
            return _problem(431, "Request header fields too large.")
        path = request.path
        if path == "/admin/host/status":
            return web.json_response({"state": self._admin.state()})
        if path.startswith("/admin/functions/"):
            return await self._admin_run(request, path.removeprefix("/admin/functions/"))
        if path == "/runtime/webhooks/eventgrid":
            return await self._eventgrid.handle(request)
        if path.startswith(self._prefix) or path + "/" == self._prefix:
            return await self._http_trigger(request, path[len(self._prefix) :])
        return web.Response(status=404)

    async def _admin_run(self, request: web.Request, name: str) -> web.StreamResponse:
        """`POST /admin/functions/{name}` `{"input": "..."}`: run a non-HTTP function now (202)."""
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST"})
        spec = self._specs.get(name)
        if spec is None:
            return web.Response(status=404)
        if spec.trigger_type == HTTP_TRIGGER:
            return _problem(400, f"'{name}' is an HTTP function: call its route instead.")
        try:
            document = json.loads(await request.read() or b"{}")
            payload = document.get("input", "") if isinstance(document, dict) else None
        except ValueError:
            payload = None
        if not isinstance(payload, str):
            return _problem(400, 'The body must be {"input": "<string>"}.')
        self._admin.run_now(spec, payload)
        return web.Response(status=202)

    async def _http_trigger(self, request: web.Request, path: str) -> web.StreamResponse:
        found = self.routes.resolve(path.strip("/"), request.method)
        if isinstance(found, frozenset):
            if not found:
                return web.Response(status=404)
            return web.Response(status=405, headers={"Allow": ", ".join(sorted(found))})
        route, params = found
        spec = self._specs[route.function]
        data = await _request_datum(request, params)
        try:
            outcome = await self._invoker.invoke(spec, data)
        except InvocationError:
            return web.Response(status=500)
        http_outputs = [b for b in spec.outputs if b["type"] == "http"]
        datum = outcome.outputs.get(str(http_outputs[0]["name"])) if http_outputs else None
        return _response(datum)


def _methods(spec: FunctionSpec) -> list[str] | None:
    methods = spec.trigger.get("methods")
    return [str(m) for m in methods] if methods else None


async def _request_datum(request: web.Request, params: Mapping[str, str]) -> meta.Datum:
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        if name.lower() != "x-forwarded-for":
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
    peer = request.remote or ""
    forwarded = ", ".join(request.headers.getall("X-Forwarded-For", []))
    headers["X-Forwarded-For"] = f"{forwarded}, {peer}" if forwarded else peer
    query: dict[str, str] = {}
    for name, value in request.query.items():
        query[name] = f"{query[name]},{value}" if name in query else value
    return meta.Datum(
        type="http",
        value={
            "method": meta.Datum(request.method, "string"),
            "url": meta.Datum(str(request.url), "string"),
            "headers": {k: meta.Datum(v, "string") for k, v in headers.items()},
            "query": {k: meta.Datum(v, "string") for k, v in query.items()},
            "params": {k: meta.Datum(v, "string") for k, v in params.items()},
            "body": meta.Datum(await request.read(), "bytes"),
        },
    )


def _response(datum: meta.Datum | None) -> web.Response:
    """The aiohttp response for what `HttpResponseConverter.encode` produced."""
    if datum is None:
        return web.Response(status=204)
    if datum.type == "string":
        return web.Response(status=200, text=str(datum.value))
    value = datum.value
    headers: CIMultiDict[str] = CIMultiDict(
        (name, str(header.value)) for name, header in value["headers"].items()
    )
    cookies: list[SimpleCookie] = value.get("cookies") or []
    for cookie in cookies:
        for morsel in cookie.values():
            headers.add("Set-Cookie", morsel.OutputString())
    body = value["body"].value
    return web.Response(
        status=int(value["status_code"].value),
        body=body.encode("utf-8") if isinstance(body, str) else body,
        headers=headers,
    )
