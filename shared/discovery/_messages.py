"""Messages on `discovery-continue`: resume a run, or start one asked for by an event.

`{"tenant": id, "resource": "users"|"groups", "mode": "full"|"delta", "runId": id}` resumes that
run after its invocation spent its time budget; without `runId` (`"trigger": "eventgrid"`) it
asks for a run, so that an Event Grid delivery is acknowledged at once instead of waiting for
the whole discovery (Event Grid retries a delivery that takes longer than 30 seconds);
`"trigger": "pending"` starts the run that serves the requests that arrived during the last one.
A message without `resource` is for users (messages queued before groups were discovered).

`{"tenant": id, "job": name}` is work of another package that runs on this queue rather than
on a function of its own (the function names are part of docs/contract.md): `overview`, the
fleet overview's summarization pass (`shared.reports`). The blueprint dispatches it by `job`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from shared.discovery._runs import RUN_ID_PATTERN
from shared.discovery._state import RESOURCES, Mode, Resource
from shared.errors import MalformedContinuation
from shared.names import DISCOVERY_CONTINUE_QUEUE
from shared.storage import Storage, get_storage, translate_errors

PENDING: Final = "pending"
TRIGGERS: Final = frozenset({"continuation", "eventgrid", PENDING})
Job = Literal["overview"]
JOBS: Final[tuple[Job, ...]] = get_args(Job)


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


@dataclass(frozen=True, slots=True)
class JobMessage:
    """`{"tenant": id, "job": name}`: run that job for the tenant (see the module docstring)."""

    tenant_id: str
    job: Job

    def to_json(self) -> str:
        return json.dumps({"tenant": self.tenant_id, "job": self.job})


async def send_continuation(
    message: Continuation | JobMessage, storage: Storage | None = None, *, delay_seconds: int = 0
) -> None:
    """Queue `message`, visible after `delay_seconds` (a pending run waits for the burst)."""
    queue = await (storage or get_storage()).queue(DISCOVERY_CONTINUE_QUEUE)
    async with translate_errors():
        await queue.send_message(message.to_json(), visibility_timeout=delay_seconds or None)


def parse_continuation(text: str) -> Continuation | JobMessage:
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
        job = body["job"]
        if job not in JOBS:
            raise MalformedContinuation(f"job is not one of {list(JOBS)}")
        return JobMessage(tenant, job)
    if run_id is not None and (not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id)):
        raise MalformedContinuation("runId is not a discovery run id")
    if mode not in ("full", "delta"):
        raise MalformedContinuation("mode is not full or delta")
    if trigger not in TRIGGERS:
        raise MalformedContinuation(f"trigger is not one of {sorted(TRIGGERS)}")
    if resource not in RESOURCES:
        raise MalformedContinuation(f"resource is not one of {list(RESOURCES)}")
    return Continuation(tenant, mode, run_id, trigger, resource)
