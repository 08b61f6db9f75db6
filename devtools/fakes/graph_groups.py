"""The loopback Graph's groups and change-notification subscriptions (mixed into `FakeGraph`).

- `GET /v1.0/groups/delta`: `$select` (displayName, securityEnabled, members), `$filter=id eq
  '...' or ...`, pages of `group_page_size` entries linked by `$skiptoken`, ending in a
  `$deltatoken` deltaLink. Each entry is a group with `members@delta`; a group with more than
  `member_chunk` members is split over several entries (possibly on several pages), as Graph
  does. The first round lists every member; later rounds only the members added and, with
  `@removed: {"reason": "deleted"}`, the ones removed. A deleted group comes as `{"id",
  "@removed": {"reason": "deleted"}}` (security groups are deleted permanently). A delta link
  can be expired (410 syncStateNotFound).
- `POST /v1.0/subscriptions`, `PATCH` and `DELETE /v1.0/subscriptions/{id}`: Graph's checks for
  users and groups (resource, changeType, notificationUrl, clientState at most 128 characters,
  expirationDateTime in the future and at most 41,760 minutes away, else 400). A subscription
  whose expirationDateTime has passed is gone: 404. Tests can shorten one's life, remove it
  (as Graph does after a subscriptionRemoved lifecycle event), and count the calls.
"""

from __future__ import annotations

import dataclasses
import json
import re
import secrets
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal

from aiohttp import web

MemberType = Literal["user", "device", "group"]
ODATA_TYPES: Final[dict[MemberType, str]] = {
    "user": "#microsoft.graph.user",
    "device": "#microsoft.graph.device",
    "group": "#microsoft.graph.group",
}
GROUP_PAGE_SIZE: Final = 100
MEMBER_CHUNK: Final = 100
MAX_SUBSCRIPTION_LIFETIME: Final = timedelta(minutes=41_760)
_FILTER_ID = re.compile(r"id eq '([0-9a-fA-F-]{36})'")


@dataclass(slots=True)
class _Group:
    id: str
    display_name: str
    security_enabled: bool
    live: bool = True
    seq: int = 0


@dataclass(slots=True)
class _Membership:
    member_type: MemberType
    live: bool
    seq: int


@dataclass(slots=True)
class _GroupRound:
    entries: list[dict[str, Any]]
    offset: int
    upto_seq: int
    ids: tuple[str, ...]


@dataclass(slots=True)
class Subscription:
    id: str
    resource: str
    change_type: str
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expires: datetime


@dataclass(slots=True)
class SubscriptionCalls:
    created: int = 0
    renewed: int = 0
    deleted: int = 0
    refused: list[str] = field(default_factory=list)


class GraphGroups:
    """State and handlers for groups and subscriptions; `FakeGraph` provides the HTTP server,
    the token check (`_authorized`), the lock, `_seq` and `_error`."""

    _lock: threading.Lock
    _seq: int
    group_page_size: int
    member_chunk: int

    def _init_groups(self, group_page_size: int, member_chunk: int) -> None:
        self.group_page_size = group_page_size
        self.member_chunk = member_chunk
        self._groups: dict[str, _Group] = {}
        self._members: dict[str, dict[str, _Membership]] = {}
        self._group_rounds: dict[str, _GroupRound] = {}
        self._group_tokens: dict[str, int] = {}
        self._expired_group_tokens: set[str] = set()
        self._subscriptions: dict[str, Subscription] = {}
        self.subscription_calls = SubscriptionCalls()

    # -- the directory's groups, as a test changes them --------------------------------------

    def add_group(
        self,
        display_name: str,
        *,
        security: bool = True,
        members: dict[str, MemberType] | None = None,
        group_id: str | None = None,
    ) -> str:
        group_id = group_id or str(uuid.uuid4())
        with self._lock:
            group = _Group(group_id, display_name, security)
            self._groups[group_id] = group
            self._members[group_id] = {}
            self._bump_group(group)
            for member_id, member_type in (members or {}).items():
                self._members[group_id][member_id] = _Membership(member_type, True, self._next())
        return group_id

    def add_member(self, group_id: str, member_id: str, member_type: MemberType) -> None:
        with self._lock:
            self._members[group_id][member_id] = _Membership(member_type, True, self._next())

    def remove_member(self, group_id: str, member_id: str) -> None:
        with self._lock:
            membership = self._members[group_id][member_id]
            membership.live, membership.seq = False, self._next()

    def rename_group(self, group_id: str, display_name: str) -> None:
        with self._lock:
            group = self._groups[group_id]
            group.display_name = display_name
            self._bump_group(group)

    def delete_group(self, group_id: str) -> None:
        with self._lock:
            group = self._groups[group_id]
            group.live = False
            self._bump_group(group)

    def expire_group_delta_links(self) -> None:
        with self._lock:
            self._expired_group_tokens.update(self._group_tokens)

    def live_groups(self, *, security_only: bool = False) -> dict[str, dict[str, Any]]:
        """What AadGroups should hold for live groups (displayName, securityEnabled)."""
        with self._lock:
            return {
                g.id: {"displayName": g.display_name, "securityEnabled": g.security_enabled}
                for g in self._groups.values()
                if g.live and (g.security_enabled or not security_only)
            }

    def live_memberships(self, group_id: str) -> dict[str, MemberType]:
        with self._lock:
            return {m: ms.member_type for m, ms in self._members[group_id].items() if ms.live}

    def removed_memberships(self, group_id: str) -> set[str]:
        with self._lock:
            return {m for m, ms in self._members[group_id].items() if not ms.live}

    def _next(self) -> int:
        self._seq += 1
        return self._seq

    def _bump_group(self, group: _Group) -> None:
        group.seq = self._next()

    # -- subscriptions, as a test inspects and changes them ----------------------------------

    def subscriptions(self) -> dict[str, Subscription]:
        """The live subscriptions by id (copies)."""
        now = datetime.now(UTC)
        with self._lock:
            return {
                s.id: dataclasses.replace(s)
                for s in self._subscriptions.values()
                if s.expires > now
            }

    def set_subscription_expiry(self, subscription_id: str, expires: datetime) -> None:
        with self._lock:
            self._subscriptions[subscription_id].expires = expires

    def remove_subscription(self, subscription_id: str) -> None:
        """Graph dropped it (as it does before a subscriptionRemoved lifecycle event)."""
        with self._lock:
            del self._subscriptions[subscription_id]

    # -- HTTP ------------------------------------------------------------------------------

    def add_group_routes(self, app: web.Application) -> None:
        app.router.add_get("/v1.0/groups/delta", self._groups_delta)
        app.router.add_post("/v1.0/subscriptions", self._create_subscription)
        app.router.add_patch("/v1.0/subscriptions/{id}", self._renew_subscription)
        app.router.add_delete("/v1.0/subscriptions/{id}", self._delete_subscription)

    async def _authorized(
        self, request: web.Request, endpoint: Literal["groups", "subscriptions"]
    ) -> web.Response | None:
        raise NotImplementedError  # FakeGraph's

    @staticmethod
    def _graph_error(status: int, code: str, message: str) -> web.Response:
        raise NotImplementedError  # FakeGraph's

    async def _groups_delta(self, request: web.Request) -> web.StreamResponse:
        refused = await self._authorized(request, "groups")
        if refused is not None:
            return refused
        query = request.query
        with self._lock:
            if "$skiptoken" in query:
                page_round = self._group_rounds.get(query["$skiptoken"])
                if page_round is None:
                    return self._graph_error(400, "BadRequest", "Unknown $skiptoken.")
            else:
                token = query.get("$deltatoken")
                if token in self._expired_group_tokens:
                    return self._graph_error(
                        410, "syncStateNotFound", "The sync state generation is not found."
                    )
                since = 0 if token is None else self._group_tokens.get(token)
                if since is None:
                    return self._graph_error(400, "BadRequest", "Unknown $deltatoken.")
                ids = tuple(_FILTER_ID.findall(query.get("$filter", "")))
                page_round = _GroupRound(self._entries(since, ids), 0, self._seq, ids)
            body = self._group_page(page_round, request)
        return web.Response(body=body, content_type="application/json")

    def _entries(self, since: int, ids: tuple[str, ...]) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for group in sorted(self._groups.values(), key=lambda g: g.id):
            if ids and group.id not in ids:
                continue
            members = {
                member_id: ms
                for member_id, ms in sorted(self._members[group.id].items())
                if ms.seq > since and (ms.live or since)
            }
            if group.seq <= since and not members:
                continue
            if not group.live:
                if since:  # a first round does not mention what is already gone
                    entries.append({"id": group.id, "@removed": {"reason": "deleted"}})
                continue
            head = {
                "@odata.type": "#microsoft.graph.group",
                "id": group.id,
                "displayName": group.display_name,
                "securityEnabled": group.security_enabled,
            }
            listed = [
                {"@odata.type": ODATA_TYPES[ms.member_type], "id": member_id}
                | ({} if ms.live else {"@removed": {"reason": "deleted"}})
                for member_id, ms in members.items()
            ]
            chunks = [
                listed[i : i + self.member_chunk] for i in range(0, len(listed), self.member_chunk)
            ] or [[]]
            entries.extend(head | {"members@delta": chunk} for chunk in chunks)
        return entries

    def _group_page(self, page_round: _GroupRound, request: web.Request) -> bytes:
        end = page_round.offset + self.group_page_size
        base = f"http://{request.host}/v1.0/groups/delta"
        body: dict[str, Any] = {
            "@odata.context": f"http://{request.host}/v1.0/$metadata#groups",
            "value": page_round.entries[page_round.offset : end],
        }
        if end < len(page_round.entries):
            skip = secrets.token_urlsafe(18)
            self._group_rounds[skip] = dataclasses.replace(page_round, offset=end)
            body["@odata.nextLink"] = f"{base}?$skiptoken={skip}"
        else:
            delta = secrets.token_urlsafe(18)
            self._group_tokens[delta] = page_round.upto_seq
            body["@odata.deltaLink"] = f"{base}?$deltatoken={delta}"
        return json.dumps(body, separators=(",", ":")).encode()

    async def _create_subscription(self, request: web.Request) -> web.StreamResponse:
        refused = await self._authorized(request, "subscriptions")
        if refused is not None:
            return refused
        body = await request.json()
        problem = _subscription_problem(body, creating=True)
        if problem is not None:
            self.subscription_calls.refused.append(problem)
            return self._graph_error(400, "InvalidRequest", problem)
        subscription = Subscription(
            id=str(uuid.uuid4()),
            resource=body["resource"],
            change_type=body["changeType"],
            notification_url=body["notificationUrl"],
            lifecycle_url=body.get("lifecycleNotificationUrl"),
            client_state=body.get("clientState"),
            expires=_parse_time(body["expirationDateTime"]),
        )
        with self._lock:
            self._subscriptions[subscription.id] = subscription
            self.subscription_calls.created += 1
        return web.json_response(_subscription_json(subscription), status=201)

    async def _renew_subscription(self, request: web.Request) -> web.StreamResponse:
        refused = await self._authorized(request, "subscriptions")
        if refused is not None:
            return refused
        body = await request.json()
        subscription = self._live_subscription(request.match_info["id"])
        if subscription is None:
            return self._graph_error(404, "ResourceNotFound", "The object was not found.")
        problem = _subscription_problem(body, creating=False)
        if problem is not None:
            self.subscription_calls.refused.append(problem)
            return self._graph_error(400, "InvalidRequest", problem)
        with self._lock:
            subscription.expires = _parse_time(body["expirationDateTime"])
            self.subscription_calls.renewed += 1
        return web.json_response(_subscription_json(subscription))

    async def _delete_subscription(self, request: web.Request) -> web.StreamResponse:
        refused = await self._authorized(request, "subscriptions")
        if refused is not None:
            return refused
        subscription_id = request.match_info["id"]
        if self._live_subscription(subscription_id) is None:
            return self._graph_error(404, "ResourceNotFound", "The object was not found.")
        with self._lock:
            del self._subscriptions[subscription_id]
            self.subscription_calls.deleted += 1
        return web.Response(status=204)

    def _live_subscription(self, subscription_id: str) -> Subscription | None:
        with self._lock:
            subscription = self._subscriptions.get(subscription_id)
            if subscription is not None and subscription.expires <= datetime.now(UTC):
                del self._subscriptions[subscription_id]  # Graph forgets expired ones
                return None
            return subscription


def _subscription_problem(body: Any, *, creating: bool) -> str | None:
    if not isinstance(body, dict):
        return "the body must be a JSON object"
    try:
        expires = _parse_time(body.get("expirationDateTime"))
    except ValueError:
        return "expirationDateTime must be a date and time"
    now = datetime.now(UTC)
    if expires <= now or expires > now + MAX_SUBSCRIPTION_LIFETIME:
        return "Subscription expiration can only be 41760 minutes in the future."
    if not creating:
        return None
    if body.get("resource") not in ("users", "groups"):
        return "resource must be users or groups"
    if not set(str(body.get("changeType", "")).split(",")) <= {"created", "updated", "deleted"}:
        return "changeType must be created, updated and/or deleted"
    url = str(body.get("notificationUrl", ""))
    if not (url.startswith("EventGrid:?") or url.startswith("https://")):
        return "notificationUrl must be https or EventGrid"
    if len(str(body.get("clientState") or "")) > 128:
        return "clientState must be at most 128 characters"
    return None


def _parse_time(value: Any) -> datetime:
    if not isinstance(value, str):
        raise ValueError("not a time")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _subscription_json(subscription: Subscription) -> dict[str, Any]:
    return {
        "id": subscription.id,
        "resource": subscription.resource,
        "changeType": subscription.change_type,
        "notificationUrl": subscription.notification_url,
        "lifecycleNotificationUrl": subscription.lifecycle_url,
        "expirationDateTime": subscription.expires.isoformat().replace("+00:00", "Z"),
        "clientState": None,  # Graph never returns it
    }


def graph_event(
    tenant: str,
    event_type: str,
    subscription: Subscription | None,
    *,
    client_state: str | None = None,
    resource_id: str | None = None,
    lifecycle: str | None = None,
) -> dict[str, Any]:
    """A Graph change or lifecycle notification as an Event Grid partner event (CloudEvents)."""
    data: dict[str, Any] = {
        "subscriptionId": subscription.id if subscription else str(uuid.uuid4()),
        "subscriptionExpirationDateTime": (
            subscription.expires.isoformat() if subscription else datetime.now(UTC).isoformat()
        ),
        "tenantId": tenant,
        "clientState": client_state,
    }
    if lifecycle:
        data["lifecycleEvent"] = lifecycle
    else:
        kind = "Users" if event_type.startswith("Microsoft.Graph.User") else "Groups"
        data |= {
            "changeType": "updated",
            "resource": f"{kind}/{resource_id}",
            "resourceData": {"id": resource_id, "organizationId": tenant},
        }
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": event_type,
        "source": f"/tenants/{tenant}/applications/{uuid.uuid4()}",
        "subject": data.get("resource", "subscription"),
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
