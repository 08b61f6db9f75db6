"""Entra ID user discovery into `AadUsers`, full and delta, resumable across invocations.

    result = await run_discovery("delta", "timer", DiscoveryConfig.from_settings(settings))

Triggers call `run_discovery` (or `resume_from_message` for a `discovery-continue` message, or
`decide` for an Event Grid event); admins read `list_runs`.
"""

from __future__ import annotations

import json
from typing import Any, Final

from shared.discovery._engine import (
    Continuation,
    DiscoveryConfig,
    FullStrategy,
    RunResult,
    run_discovery,
)
from shared.discovery._events import DISCOVERY_REQUESTED, EventDecision, MalformedEvent, decide
from shared.discovery._graph import SELECT, USER_PROPERTIES
from shared.discovery._runs import RUN_ID_PATTERN, RunLog, RunsPage
from shared.discovery._state import Mode
from shared.errors import BadRequest
from shared.names import DISCOVERY_RUNS
from shared.storage import Storage, get_storage

__all__ = [
    "DISCOVERY_REQUESTED",
    "RUNS_MAX_PAGE_SIZE",
    "SELECT",
    "USER_PROPERTIES",
    "Continuation",
    "DiscoveryConfig",
    "EventDecision",
    "FullStrategy",
    "MalformedContinuation",
    "MalformedEvent",
    "Mode",
    "RunResult",
    "RunsPage",
    "decide",
    "list_runs",
    "parse_continuation",
    "parse_runs_query",
    "run_discovery",
]


RUNS_DEFAULT_PAGE_SIZE: Final = 50
RUNS_MAX_PAGE_SIZE: Final = 200


def parse_runs_query(page_size: str | None, continuation: str | None) -> tuple[int, str | None]:
    """`pageSize` and `continuation` of `GET /api/discovery/runs`, or `BadRequest` naming them."""
    errors: dict[str, str] = {}
    size = RUNS_DEFAULT_PAGE_SIZE
    if page_size:
        if page_size.isdigit() and 1 <= int(page_size) <= RUNS_MAX_PAGE_SIZE:
            size = int(page_size)
        else:
            errors["pageSize"] = f"must be a whole number from 1 to {RUNS_MAX_PAGE_SIZE}"
    if continuation and not RUN_ID_PATTERN.fullmatch(continuation):
        errors["continuation"] = "must be the continuation of a previous page"
    if errors:
        raise BadRequest("Bad query for discovery runs.", errors=errors)
    return size, continuation or None


class MalformedContinuation(ValueError):
    """A `discovery-continue` message that is not `{"tenant", "runId", "mode"}`."""


def parse_continuation(text: str) -> Continuation:
    try:
        body: Any = json.loads(text)
    except ValueError:
        raise MalformedContinuation("the message is not JSON") from None
    if not isinstance(body, dict):
        raise MalformedContinuation("the message is not a JSON object")
    tenant, run_id, mode = body.get("tenant"), body.get("runId"), body.get("mode")
    if not isinstance(tenant, str) or not tenant:
        raise MalformedContinuation("tenant is missing")
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise MalformedContinuation("runId is not a discovery run id")
    if mode not in ("full", "delta"):
        raise MalformedContinuation("mode is not full or delta")
    return Continuation(tenant, run_id, mode)


async def list_runs(
    tenant_id: str, *, size: int, after: str | None, storage: Storage | None = None
) -> RunsPage:
    """A page of the tenant's runs, newest first; `after` is the previous page's token."""
    storage = storage or get_storage()
    return await RunLog(await storage.table(DISCOVERY_RUNS), tenant_id).page(size, after)
