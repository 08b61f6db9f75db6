"""What an Event Grid event asks discovery to do.

- Microsoft Graph change notifications, delivered as Event Grid partner events (CloudEvents 1.0;
  `data.resourceData.organizationId` or `data.tenantId` names the tenant): user events
  (`Microsoft.Graph.UserCreated`/`UserUpdated`/`UserDeleted`) start a user delta, group events
  (`Microsoft.Graph.GroupCreated`/`GroupUpdated`/`GroupDeleted`) a group delta: the delta link
  says what changed. Their `clientState` must be the subscription's (the caller checks it).
- Graph lifecycle notifications (`Microsoft.Graph.SubscriptionReauthorizationRequired`,
  `Microsoft.Graph.SubscriptionRemoved`, a missed-notifications event; or `data.lifecycleEvent`
  `reauthorizationRequired` / `subscriptionRemoved` / `missed`) name a subscription: renew it,
  recreate it and run a delta, or run a delta.
- `CMBootstrap.DiscoveryRequested` with data `{"mode": "full" | "delta", "resource"?: "users" |
  "groups"}` starts that mode for that resource, or for every discovered one.
- Anything else is not ours: ignored.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from shared.discovery._state import RESOURCES, Mode, Resource
from shared.errors import MalformedEvent

DISCOVERY_REQUESTED: Final = "CMBootstrap.DiscoveryRequested"
GRAPH_CHANGE_EVENTS: Final[dict[str, Resource]] = {
    "Microsoft.Graph.UserCreated": "users",
    "Microsoft.Graph.UserUpdated": "users",
    "Microsoft.Graph.UserDeleted": "users",
    "Microsoft.Graph.GroupCreated": "groups",
    "Microsoft.Graph.GroupUpdated": "groups",
    "Microsoft.Graph.GroupDeleted": "groups",
}
Lifecycle = Literal["reauthorizationRequired", "subscriptionRemoved", "missed"]
LIFECYCLE_EVENTS: Final[dict[str, Lifecycle]] = {
    "Microsoft.Graph.SubscriptionReauthorizationRequired": "reauthorizationRequired",
    "Microsoft.Graph.SubscriptionRemoved": "subscriptionRemoved",
    "Microsoft.Graph.SubscriptionMissed": "missed",
}
_LIFECYCLE_VALUES: Final = frozenset(LIFECYCLE_EVENTS.values())


@dataclass(frozen=True, slots=True)
class EventDecision:
    mode: Mode | None  # None: no run
    reason: str
    resources: tuple[Resource, ...] = ()
    # A Graph notification: the clientState it carries, to be checked against the subscription.
    graph: bool = False
    client_state: str | None = None
    subscription_id: str | None = None
    lifecycle: Lifecycle | None = None


def decide(
    event_type: object,
    data: Any,
    tenant_id: str,
    enabled: tuple[Resource, ...] = ("users",),
) -> EventDecision:
    """What an event asks for, or why it is ignored. Raises `MalformedEvent`.

    `event_type` and `data` are what the event says, of any JSON type: the envelope is the
    sender's, and an event that cannot be read is refused here, never with an exception that
    would fail the delivery (and have Event Grid redeliver it for a day).
    """
    if not event_type:
        raise MalformedEvent("the event has no type")
    if not isinstance(event_type, str):
        raise MalformedEvent(f"the event's type is a JSON {_json_type(event_type)}, not a string")
    if event_type == DISCOVERY_REQUESTED:
        return _requested(_mapping(data), enabled)
    lifecycle = LIFECYCLE_EVENTS.get(event_type)
    if event_type in GRAPH_CHANGE_EVENTS or lifecycle is not None:
        body = _mapping(data)
        event_tenant = _graph_tenant(body)
        if event_tenant is not None and event_tenant.lower() != tenant_id.lower():
            return EventDecision(None, "a Graph notification for another tenant")
        lifecycle = lifecycle or _lifecycle_value(body)
        client_state = body.get("clientState")
        subscription = body.get("subscriptionId")
        common: dict[str, Any] = {
            "graph": True,
            "client_state": client_state if isinstance(client_state, str) else None,
            "subscription_id": subscription if isinstance(subscription, str) else None,
        }
        if lifecycle is not None:
            return EventDecision(
                None, f"Graph lifecycle event {lifecycle}", lifecycle=lifecycle, **common
            )
        resource = GRAPH_CHANGE_EVENTS[event_type]
        if resource not in enabled:
            return EventDecision(None, f"{event_type}: {resource} are not discovered")
        return EventDecision(
            "delta", f"{event_type}: {resource} changed", resources=(resource,), **common
        )
    return EventDecision(None, f"event type {event_type[:80]!r} is not for discovery")


def _requested(data: Mapping[str, Any], enabled: tuple[Resource, ...]) -> EventDecision:
    mode = data.get("mode")
    if mode not in ("full", "delta"):
        raise MalformedEvent(
            f'{DISCOVERY_REQUESTED} needs data {{"mode": "full" | "delta"}}, '
            f"got mode {_shown(mode)}"
        )
    resource = data.get("resource")
    if resource is None:
        return EventDecision(mode, f"{DISCOVERY_REQUESTED} asked for a {mode} run", enabled)
    if resource not in RESOURCES:
        raise MalformedEvent(
            f'{DISCOVERY_REQUESTED} data "resource" must be "users" or "groups", '
            f"got {_shown(resource)}"
        )
    if resource not in enabled:
        return EventDecision(None, f"{DISCOVERY_REQUESTED}: {resource} are not discovered")
    return EventDecision(mode, f"{DISCOVERY_REQUESTED} asked for a {mode} run", (resource,))


def _lifecycle_value(data: Mapping[str, Any]) -> Lifecycle | None:
    value = data.get("lifecycleEvent")
    for known in _LIFECYCLE_VALUES:
        if value == known:
            return known
    return None


def _shown(value: object) -> str:
    """A value an event sent, for a log line: a short string, or only its JSON type."""
    return repr(value[:40]) if isinstance(value, str) else f"a JSON {_json_type(value)}"


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
