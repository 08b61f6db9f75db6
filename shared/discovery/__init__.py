"""Entra ID user and group discovery into `AadUsers`, `AadGroups` and `AadGroupMembers`, full
and delta, resumable across invocations, bursts coalesced per resource.

    result = await run_discovery("delta", "timer", config, resource="groups")

Timers call `run_discovery` for each of `config.resources`; an Event Grid event is read with
`decide` and handed to the `discovery-continue` queue (`send_continuation`), whose messages
(`parse_continuation`) start or resume a run; admins read `list_runs` and `list_groups`.
"""

from __future__ import annotations

from typing import Final

from shared.discovery._engine import (
    DiscoveryBusy,
    DiscoveryConfig,
    RunResult,
    run_discovery,
)
from shared.discovery._events import DISCOVERY_REQUESTED, EventDecision, decide
from shared.discovery._graph import SELECT, USER_PROPERTIES
from shared.discovery._groups_view import (
    GROUPS_MAX_PAGE_SIZE,
    GroupsPage,
    list_groups,
    parse_groups_query,
)
from shared.discovery._messages import Continuation, parse_continuation, send_continuation
from shared.discovery._runs import RUN_ID_PATTERN, RunLog, RunsPage
from shared.discovery._state import RESOURCES, Mode, Resource
from shared.discovery._subscriptions import (
    SubscriptionConfig,
    check_client_state,
    handle_lifecycle,
    maintain_subscriptions,
    subscription_health,
)
from shared.discovery._users import UserWriter
from shared.errors import MalformedContinuation, MalformedEvent
from shared.names import DISCOVERY_RUNS
from shared.paging import parse_page_query
from shared.storage import TRANSACTION_LIMIT, TRANSACTIONS_IN_FLIGHT, Storage, get_storage

__all__ = [
    "DISCOVERY_REQUESTED",
    "GROUPS_MAX_PAGE_SIZE",
    "RESOURCES",
    "RUNS_MAX_PAGE_SIZE",
    "SELECT",
    "TRANSACTIONS_IN_FLIGHT",
    "TRANSACTION_LIMIT",
    "USER_PROPERTIES",
    "Continuation",
    "DiscoveryBusy",
    "DiscoveryConfig",
    "EventDecision",
    "GroupsPage",
    "MalformedContinuation",
    "MalformedEvent",
    "Mode",
    "Resource",
    "RunResult",
    "RunsPage",
    "SubscriptionConfig",
    "UserWriter",
    "check_client_state",
    "decide",
    "handle_lifecycle",
    "list_groups",
    "list_runs",
    "maintain_subscriptions",
    "parse_continuation",
    "parse_groups_query",
    "parse_runs_query",
    "run_discovery",
    "send_continuation",
    "subscription_health",
]


RUNS_DEFAULT_PAGE_SIZE: Final = 50
RUNS_MAX_PAGE_SIZE: Final = 200


def parse_runs_query(
    page_size: str | None, continuation: str | None, *, paging_param: str = "continuation"
) -> tuple[int, str | None]:
    """`pageSize` and `next` (or its older name `continuation`, as `paging_param` says) of
    `GET /api/discovery/runs`, or `BadRequest` naming them."""
    return parse_page_query(
        page_size,
        continuation,
        default=RUNS_DEFAULT_PAGE_SIZE,
        maximum=RUNS_MAX_PAGE_SIZE,
        read_next=lambda token: token if RUN_ID_PATTERN.fullmatch(token) else None,
        what="discovery runs",
        next_param=paging_param,
    )


async def list_runs(
    tenant_id: str, *, size: int, after: str | None, storage: Storage | None = None
) -> RunsPage:
    """A page of the tenant's runs, newest first; `after` is the previous page's token."""
    storage = storage or get_storage()
    return await RunLog(await storage.table(DISCOVERY_RUNS), tenant_id).page(size, after)
