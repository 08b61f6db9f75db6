"""The HTTP front end: `/api/...` routes, the admin endpoints and the Event Grid webhook.

Like the Functions host (Kestrel in front) it adds `X-Forwarded-For` (the peer address, appended
to any value the client sent, as Azure's front end does: the last entry is the one to trust),
passes a body through as sent (no `Content-Encoding` is undone, as Kestrel does not), and answers
by itself:
- 400 for a request it cannot parse, a `Host` that is no host[:port], a header that is not ASCII
  (Kestrel's default) or a body whose framing breaks off;
- 404 for an unknown route, 405 for a known route asked with another method;
- 413 for a body over 100 MB (from `Content-Length` before reading, or while reading);
- 414 for a request line over 8 KiB, 431 for a header block over 32 KiB or over 100 header
  fields (Kestrel's defaults);
- 500 when a function raised.
Every one of them is problem+json (devhost.problem) with a fixed detail: nothing of the request.

aiohttp answers its parser errors itself with a text body that quotes the offending bytes (the
start of an Authorization header, say) and offers no hook for them (aio-libs/aiohttp#3287), so the
front end is aiohttp's low-level `web.Server` with a connection class whose `handle_error` answers
problem+json and logs only the error's class, never its message.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Mapping
from http.cookies import SimpleCookie
from typing import Any, Final, Protocol

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, LineTooLong
from azure.functions import meta
from multidict import CIMultiDict

from devhost.app_index import HTTP_TRIGGER, FunctionSpec
from devhost.eventgrid import EventGridWebhook
from devhost.invoke import InvocationError, Invoker
from devhost.problem import problem
from devhost.routes import RouteTable, compile_route

log = logging.getLogger(__name__)

MAX_BODY_BYTES: Final = 100 * 1024 * 1024
MAX_HEADER_BYTES: Final = 32 * 1024
MAX_HEADER_COUNT: Final = 100
MAX_REQUEST_LINE_BYTES: Final = 8 * 1024
# aiohttp must parse a header before the host can answer 431 for it: single fields may be large
# (4 x the block limit), and it counts fields up to 10 x ours. Beyond that its parser gives up
# and `handle_error` below answers.
PARSER_LIMITS: Final[Mapping[str, Any]] = {
    "max_line_size": MAX_REQUEST_LINE_BYTES,
    "max_field_size": 4 * MAX_HEADER_BYTES,
    "max_headers": 10 * MAX_HEADER_COUNT,
    "auto_decompress": False,
    "access_log": None,
}
_NOT_ASCII: Final = re.compile(rb"[^\t\x20-\x7e]")


class AdminRunner(Protocol):
    def state(self) -> str: ...

    def run_now(self, spec: FunctionSpec, payload: str) -> None: ...


class _BodyRefused(Exception):
    def __init__(self, response: web.Response) -> None:
        super().__init__(response.status)
        self.response = response


class _ProblemConnection(web.RequestHandler):
    """One client connection; aiohttp calls `handle_error` for what it answers by itself."""

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        if request.writer.output_size > 0:  # an answer was under way: only closing is left
            raise ConnectionError("the response had started when the request failed")
        if isinstance(exc, BadHttpMessage):
            # The message quotes the request's bytes (maybe a token): log the class only.
            log.warning("unparseable request from %s: %s", request.remote, type(exc).__name__)
            return _parse_problem(exc, self.max_field_size)
        if status >= 500:
            log.error("the host failed on a request from %s", request.remote, exc_info=exc)
            return problem(status, "The host failed to handle the request.", close=True)
        return problem(status, "The request was refused.", close=True)


def _parse_problem(error: BadHttpMessage, max_field_size: int) -> web.Response:
    if isinstance(error, LineTooLong):
        # LineTooLong(line, limit): the limit says whether a header field or the request line.
        if len(error.args) > 1 and error.args[1] == max_field_size:
            return problem(431, "A request header field is too large.", close=True)
        return problem(414, "The request line is too long.", close=True)
    return problem(400, "The request is not valid HTTP/1.1.", close=True)


class _ProblemServer(web.Server):
    """aiohttp's low-level server whose connections are `_ProblemConnection`s."""

    def __init__(self, handler: Any, **handler_args: Any) -> None:
        super().__init__(handler, request_factory=self._request, **handler_args)
        self._handler_args = handler_args

    def __call__(self) -> web.RequestHandler:
        return _ProblemConnection(self, loop=asyncio.get_running_loop(), **self._handler_args)

    @staticmethod
    def _request(
        message: Any, payload: Any, protocol: Any, writer: Any, task: Any
    ) -> web.BaseRequest:
        loop = asyncio.get_running_loop()
        return web.BaseRequest(
            message, payload, protocol, writer, task, loop, client_max_size=MAX_BODY_BYTES
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

    def server(self) -> web.Server:
        return _ProblemServer(self.dispatch, **PARSER_LIMITS)

    def url(self, base_url: str, spec: FunctionSpec) -> str:
        return base_url + self._prefix + str(spec.trigger.get("route") or spec.name).strip("/")

    async def dispatch(self, request: web.BaseRequest) -> web.StreamResponse:
        refused = _refuse_request(request)
        if refused is not None:
            return refused
        try:
            return await self._route(request)
        except _BodyRefused as refusal:
            return refusal.response

    async def _route(self, request: web.BaseRequest) -> web.StreamResponse:
        path = request.path
        if path == "/admin/host/status":
            return web.json_response({"state": self._admin.state()})
        if path.startswith("/admin/functions/"):
            return await self._admin_run(request, path.removeprefix("/admin/functions/"))
        if path == "/runtime/webhooks/eventgrid":
            return await self._eventgrid.handle(request, await read_body(request))
        if path.startswith(self._prefix) or path + "/" == self._prefix:
            return await self._http_trigger(request, path[len(self._prefix) :])
        return problem(404, "No function answers this path.")

    async def _admin_run(self, request: web.BaseRequest, name: str) -> web.StreamResponse:
        """`POST /admin/functions/{name}` `{"input": "..."}`: run a non-HTTP function now (202)."""
        if request.method != "POST":
            return problem(405, "Use POST.", headers={"Allow": "POST"})
        spec = self._specs.get(name)
        if spec is None:
            return problem(404, "The app has no function of that name.")
        if spec.trigger_type == HTTP_TRIGGER:
            return problem(400, "That is an HTTP function: call its route instead.")
        try:
            document = json.loads(await read_body(request) or b"{}")
            payload = document.get("input", "") if isinstance(document, dict) else None
        except (ValueError, RecursionError):
            payload = None
        if not isinstance(payload, str):
            return problem(400, 'The body must be {"input": "<string>"}.')
        self._admin.run_now(spec, payload)
        return web.Response(status=202)

    async def _http_trigger(self, request: web.BaseRequest, path: str) -> web.StreamResponse:
        found = self.routes.resolve(path.strip("/"), request.method)
        if isinstance(found, frozenset):
            if not found:
                return problem(404, "No function answers this path.")
            allowed = ", ".join(sorted(found))
            return problem(405, "The route does not take this method.", headers={"Allow": allowed})
        route, params = found
        spec = self._specs[route.function]
        data = await _request_datum(request, params)
        try:
            outcome = await self._invoker.invoke(spec, data)
        except InvocationError:
            return problem(500, "The function failed; the host logged why.")
        http_outputs = [b for b in spec.outputs if b["type"] == "http"]
        datum = outcome.outputs.get(str(http_outputs[0]["name"])) if http_outputs else None
        return _response(datum)


def _refuse_request(request: web.BaseRequest) -> web.Response | None:
    """What Kestrel refuses before any route runs, as a problem; None for a fine request."""
    headers = request.raw_headers
    if len(headers) > MAX_HEADER_COUNT:
        return problem(431, f"More than {MAX_HEADER_COUNT} request header fields.", close=True)
    if sum(len(k) + len(v) + 4 for k, v in headers) > MAX_HEADER_BYTES:
        return problem(431, "Request header fields too large.", close=True)
    if any(_NOT_ASCII.search(k) or _NOT_ASCII.search(v) for k, v in headers):
        return problem(400, "Request header fields must be printable ASCII.", close=True)
    try:
        request.url  # noqa: B018 (builds the URL from Host: a port of 99999999 raises)
    except ValueError:
        return problem(400, "The Host header is not a valid host[:port].", close=True)
    declared = request.content_length
    if declared is not None and declared > MAX_BODY_BYTES:
        return _too_large()
    return None


def _too_large() -> web.Response:
    return problem(413, f"The body is larger than {MAX_BODY_BYTES} bytes.", close=True)


async def read_body(request: web.BaseRequest) -> bytes:
    """The body as sent; a body over the limit or with broken framing ends the request."""
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise _BodyRefused(_too_large()) from None
    except web.RequestPayloadError:
        refusal = problem(400, "The body ended before its declared framing.", close=True)
        raise _BodyRefused(refusal) from None


def _methods(spec: FunctionSpec) -> list[str] | None:
    methods = spec.trigger.get("methods")
    return [str(m) for m in methods] if methods else None


async def _request_datum(request: web.BaseRequest, params: Mapping[str, str]) -> meta.Datum:
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
            "body": meta.Datum(await read_body(request), "bytes"),
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
