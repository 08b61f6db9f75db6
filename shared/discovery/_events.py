"""What an Event Grid event asks discovery to do.

- Microsoft Graph change notifications for users, delivered as Event Grid partner events
  (CloudEvents 1.0: `Microsoft.Graph.UserUpdated` for create, update and soft delete,
  `Microsoft.Graph.UserDeleted` for permanent deletion; `data.resourceData.organizationId` or
  `data.tenantId` names the tenant) start a delta run: the delta link says what changed.
- `CMBootstrap.DiscoveryRequested` with data `{"mode": "full" | "delta"}` starts that mode.
- Anything else is not ours: ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.discovery._state import Mode
from shared.errors import BootstrapError

DISCOVERY_REQUESTED: Final = "CMBootstrap.DiscoveryRequested"
GRAPH_USER_EVENTS: Final = frozenset(
    {"Microsoft.Graph.UserCreated", "Microsoft.Graph.UserUpdated", "Microsoft.Graph.UserDeleted"}
)


class MalformedEvent(BootstrapError):
    """The event cannot be read; `str()` says what is wrong (never the whole payload)."""


@dataclass(frozen=True, slots=True)
class EventDecision:
    mode: Mode | None  # None: ignore the event
    reason: str


def decide(event_type: object, data: Any, tenant_id: str) -> EventDecision:
    """The run an event asks for, or why it is ignored. Raises `MalformedEvent`.

    `event_type` and `data` are what the event says, of any JSON type: the envelope is the
    sender's, and an event that cannot be read is refused here, never with an exception that
    would fail the delivery (and have Event Grid redeliver it for a day).
    """
    if not event_type:
        raise MalformedEvent("the event has no type")
    if not isinstance(event_type, str):
        raise MalformedEvent(f"the event's type is a JSON {_json_type(event_type)}, not a string")
    if event_type == DISCOVERY_REQUESTED:
        mode = _mapping(data).get("mode")
        if mode not in ("full", "delta"):
            shown = repr(mode[:40]) if isinstance(mode, str) else f"a JSON {_json_type(mode)}"
            raise MalformedEvent(
                f'{DISCOVERY_REQUESTED} needs data {{"mode": "full" | "delta"}}, got mode {shown}'
            )
        return EventDecision(mode, f"{DISCOVERY_REQUESTED} asked for a {mode} run")
    if event_type in GRAPH_USER_EVENTS:
        event_tenant = _graph_tenant(_mapping(data))
        if event_tenant is not None and event_tenant.lower() != tenant_id.lower():
            return EventDecision(None, "a Graph notification for another tenant")
        return EventDecision("delta", f"{event_type}: a user changed")
    return EventDecision(None, f"event type {event_type[:80]!r} is not for discovery")


def _json_type(value: object) -> str:
    names = {dict: "object", list: "array", bool: "boolean", int: "number", float: "number"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _mapping(data: Any) -> Mapping[str, Any]:
    if isinstance(data, (str, bytes)):
        try:
            data = json.loads(data)
        except (ValueError, RecursionError):  # RecursionError: nested deeper than json reads
            raise MalformedEvent("the event's data is not JSON") from None
    if not isinstance(data, Mapping):
        raise MalformedEvent("the event's data is not a JSON object")
    return data


def _graph_tenant(data: Mapping[str, Any]) -> str | None:
    resource = data.get("resourceData")
    if isinstance(resource, Mapping) and isinstance(resource.get("organizationId"), str):
        return str(resource["organizationId"])
    tenant = data.get("tenantId")
    return tenant if isinstance(tenant, str) else None
