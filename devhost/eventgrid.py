"""`POST /runtime/webhooks/eventgrid?functionName=NAME`, as the Functions host's Event Grid webhook.

- `aeg-event-type: SubscriptionValidation`: answer `{"validationResponse": code}` without calling
  the function (an Event Grid subscription is created only after this handshake).
- `aeg-event-type: Notification`: the body is an array of Event Grid events, or CloudEvents 1.0
  (one or a batch); the function runs once per event. 202 when all succeeded; a failure is a 500,
  so that Event Grid retries the delivery.
- `OPTIONS` with `WebHook-Request-Origin` (the CloudEvents abuse-protection handshake) is allowed.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from azure.functions import meta

from devhost.app_index import EVENT_GRID_TRIGGER, FunctionSpec
from devhost.invoke import InvocationError, Invoker

log = logging.getLogger(__name__)


def event_datum(event: Mapping[str, Any]) -> meta.Datum:
    return meta.Datum(json.dumps(event), "json")


def _bad_request(detail: str) -> web.Response:
    return web.json_response(
        {"type": "about:blank", "title": "Bad Request", "status": 400, "detail": detail},
        status=400,
        content_type="application/problem+json",
    )


class EventGridWebhook:
    def __init__(self, specs: Mapping[str, FunctionSpec], invoker: Invoker) -> None:
        self._specs = {
            name: spec for name, spec in specs.items() if spec.trigger_type == EVENT_GRID_TRIGGER
        }
        self._invoker = invoker

    def functions(self) -> list[FunctionSpec]:
        return list(self._specs.values())

    async def handle(self, request: web.Request) -> web.StreamResponse:
        spec = self._specs.get(request.query.get("functionName", ""))
        if spec is None:
            return web.Response(status=404)
        if request.method == "OPTIONS":
            origin = request.headers.get("WebHook-Request-Origin", "*")
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin})
        if request.method != "POST":
            return web.Response(status=405, headers={"Allow": "POST, OPTIONS"})
        try:
            document = json.loads(await request.read())
        except ValueError:
            return _bad_request("The body is not valid JSON.")
        events = document if isinstance(document, list) else [document]
        if not all(isinstance(event, dict) for event in events):
            return _bad_request("The body must be an event or an array of events.")
        kind = request.headers.get("aeg-event-type", "")
        if kind == "SubscriptionValidation":
            return self._validate(events)
        if kind == "Unsubscribe":
            return web.Response(status=202)
        if kind != "Notification":
            return _bad_request("The aeg-event-type header must be Notification.")
        for event in events:
            try:
                await self._invoker.invoke(spec, event_datum(event))
            except InvocationError:
                return web.Response(status=500)
        return web.Response(status=202)

    @staticmethod
    def _validate(events: list[dict[str, Any]]) -> web.Response:
        data = events[0].get("data") if events else None
        code = data.get("validationCode") if isinstance(data, dict) else None
        if not isinstance(code, str):
            return _bad_request("A SubscriptionValidation event carries data.validationCode.")
        log.info("Event Grid subscription validated")
        return web.json_response({"validationResponse": code})
