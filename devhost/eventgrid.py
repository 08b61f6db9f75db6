"""`POST /runtime/webhooks/eventgrid?functionName=NAME`, as the Functions host's Event Grid webhook.

- `aeg-event-type: SubscriptionValidation`: answer `{"validationResponse": code}` without calling
  the function (an Event Grid subscription is created only after this handshake).
- `aeg-event-type: Notification`: the body is an array of Event Grid events, or CloudEvents 1.0
  (one or a batch); the function runs once per event, all events at once, as the Functions host
  runs them. 202 when every call succeeded; when one failed, 500 (after the others ran), so that
  Event Grid redelivers the batch: a function acknowledges an event it can never handle by
  returning normally (logging why), not by raising.
- An item of the batch that is no JSON object, or that `azure.functions`' own converter cannot
  decode (an `eventTime` of the wrong type, a time it cannot read), is logged and acknowledged
  without a call: Event Grid validates the envelope when an event is published, so such an event
  reaches only this host, and retrying it could never help.
- A body that is not JSON (or nested too deeply to decode), or neither an object nor an array, is
  400 problem+json; an unknown `functionName` 404.
- `OPTIONS` with `WebHook-Request-Origin` (the CloudEvents abuse-protection handshake) is allowed.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from typing import Any

from aiohttp import web
from azure.functions import meta

from devhost.app_index import EVENT_GRID_TRIGGER, FunctionSpec
from devhost.invoke import InvocationError, Invoker, UnreadableTrigger
from devhost.problem import problem

log = logging.getLogger(__name__)


def event_datum(event: Mapping[str, Any]) -> meta.Datum:
    return meta.Datum(json.dumps(event), "json")


class EventGridWebhook:
    def __init__(self, specs: Mapping[str, FunctionSpec], invoker: Invoker) -> None:
        self._specs = {
            name: spec for name, spec in specs.items() if spec.trigger_type == EVENT_GRID_TRIGGER
        }
        self._invoker = invoker

    def functions(self) -> list[FunctionSpec]:
        return list(self._specs.values())

    async def handle(self, request: web.BaseRequest, body: bytes) -> web.StreamResponse:
        spec = self._specs.get(request.query.get("functionName", ""))
        if spec is None:
            return problem(404, "The app has no Event Grid function of that name.")
        if request.method == "OPTIONS":
            origin = request.headers.get("WebHook-Request-Origin", "*")
            return web.Response(status=200, headers={"WebHook-Allowed-Origin": origin})
        if request.method != "POST":
            return problem(405, "Use POST.", headers={"Allow": "POST, OPTIONS"})
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            return problem(400, "The body is not JSON (or is nested too deeply to read).")
        if isinstance(document, dict):
            events: list[Any] = [document]
        elif isinstance(document, list):
            events = document
        else:
            return problem(400, "The body must be an event or an array of events.")
        kind = request.headers.get("aeg-event-type", "")
        if kind == "SubscriptionValidation":
            return self._validate(events)
        if kind == "Unsubscribe":
            return web.Response(status=202)
        if kind != "Notification":
            return problem(400, "The aeg-event-type header must be Notification.")
        outcomes = await asyncio.gather(
            *(self._deliver(spec, position, event) for position, event in enumerate(events))
        )
        if not all(outcomes):
            return problem(500, "A function failed on an event of this delivery; retry it.")
        return web.Response(status=202)

    async def _deliver(self, spec: FunctionSpec, position: int, event: object) -> bool:
        """Call the function with one event; False only when the function failed."""
        if not isinstance(event, dict):
            log.warning("Event Grid item %d is not a JSON object: acknowledged, not run", position)
            return True
        try:
            await self._invoker.invoke(spec, event_datum(event))
        except UnreadableTrigger:
            log.warning("Event Grid item %d cannot be decoded: acknowledged, not run", position)
        except InvocationError:
            return False  # logged by the invoker
        return True

    @staticmethod
    def _validate(events: list[Any]) -> web.Response:
        first = events[0] if events else None
        data = first.get("data") if isinstance(first, dict) else None
        code = data.get("validationCode") if isinstance(data, dict) else None
        if not isinstance(code, str):
            return problem(400, "A SubscriptionValidation event carries data.validationCode.")
        log.info("Event Grid subscription validated")
        return web.json_response({"validationResponse": code})
