"""Messages on `discovery-continue`: resume a run, or start one asked for by an event.

`{"tenant": id, "resource": "users"|"groups", "mode": "full"|"delta", "runId": id}` resumes that
run after its invocation spent its time budget; without `runId` (`"trigger": "eventgrid"`) it
asks for a run, so that an Event Grid delivery is acknowledged at once instead of waiting for
the whole discovery (Event Grid retries a delivery that takes longer than 30 seconds);
`"trigger": "pending"` starts the run that serves the requests that arrived during the last one.
A message without `resource` is for users (messages queued before groups were discovered).
`{"tenant": id, "job": "profiles"}` runs a background job (`shared.jobs`) instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

from shared.discovery._runs import RUN_ID_PATTERN
from shared.discovery._state import RESOURCES, Mode, Resource
from shared.errors import MalformedContinuation
from shared.jobs import JOBS, Job
from shared.names import DISCOVERY_CONTINUE_QUEUE
from shared.storage import Storage, get_storage, translate_errors

PENDING: Final = "pending"
TRIGGERS: Final = frozenset({"continuation", "eventgrid", PENDING})


@dataclass(frozen=True, slots=True)
class Continuation:
    tenant_id: str
    mode: Mode
    run_id: str | None = None
    trigger: str = "continuation"
    resource: Resource = "users"

    def to_json(self) -> str:
        body: dict[str, str] = {
            "tenant": self.tenant_id,
            "resource": self.resource,
            "mode": self.mode,
        }
        if self.run_id:
            body["runId"] = self.run_id
        body["trigger"] = self.trigger
        return json.dumps(body)


async def send_continuation(
    message: Continuation, storage: Storage | None = None, *, delay_seconds: int = 0
) -> None:
    """Queue `message`, visible after `delay_seconds` (a pending run waits for the burst)."""
    queue = await (storage or get_storage()).queue(DISCOVERY_CONTINUE_QUEUE)
    async with translate_errors():
        await queue.send_message(message.to_json(), visibility_timeout=delay_seconds or None)


def parse_continuation(text: str) -> Continuation | Job:
    try:
        body: Any = json.loads(text)
    except ValueError:
        raise MalformedContinuation("the message is not JSON") from None
    if not isinstance(body, dict):
        raise MalformedContinuation("the message is not a JSON object")
    tenant, run_id, mode = body.get("tenant"), body.get("runId"), body.get("mode")
    trigger = body.get("trigger", "continuation")
    resource = body.get("resource", "users")
    if not isinstance(tenant, str) or not tenant:
        raise MalformedContinuation("tenant is missing")
    if "job" in body:
        return _parse_job(tenant, body)
    if run_id is not None and (not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id)):
        raise MalformedContinuation("runId is not a discovery run id")
    if mode not in ("full", "delta"):
        raise MalformedContinuation("mode is not full or delta")
    if trigger not in TRIGGERS:
        raise MalformedContinuation(f"trigger is not one of {sorted(TRIGGERS)}")
    if resource not in RESOURCES:
        raise MalformedContinuation(f"resource is not one of {list(RESOURCES)}")
    return Continuation(tenant, mode, run_id, trigger, resource)


def _parse_job(tenant: str, body: dict[str, Any]) -> Job:
    job = body["job"]
    if job not in JOBS:
        raise MalformedContinuation(f"job is not one of {list(JOBS)}")
    if set(body) != {"tenant", "job"}:
        raise MalformedContinuation("a job message has only tenant and job")
    return Job(tenant, job)
