"""The app's Microsoft Graph change-notification subscriptions, kept alive unattended.

One subscription per discovered resource (`users`; `groups` unless DISCOVERY_GROUPS is none) to
GRAPH_NOTIFICATION_URL, lifecycle notifications to the same URL, created and renewed with the
managed identity's application permissions. Its row in `GraphSubscriptions` (PartitionKey
tenant, RowKey resource) records every step: subscription id, expirationDateTime, the last
renewal and its error, the last lifecycle event.

- Lifetime: Graph allows at most 41,760 minutes for users and groups and answers a longer
  `expirationDateTime` with 400; we ask for 41,700 (an hour of clock skew to spare) and renew
  once fewer than 14 days are left: with the 6-hourly timer that is ~56 tries before a
  subscription could lapse, and `/api/health` turns unhealthy 24 hours before it does.
- A renewal answered 404 means Graph no longer knows the subscription: it is created again.
- `clientState` is a random secret kept only in the row (never logged or returned); it is
  written before the subscription is created, so the first notification can already be checked,
  and every notification whose `clientState` differs is ignored (`check_client_state`).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient
from kiota_abstractions.method import Method

from shared.discovery._events import Lifecycle
from shared.discovery._graph import DiscoveryGraph, GraphError, GraphNotFound, graph_client
from shared.discovery._state import RESOURCES, Resource
from shared.names import GRAPH_SUBSCRIPTIONS
from shared.settings import Settings
from shared.storage import Storage, get_storage, translate_errors

MAX_LIFETIME: Final = timedelta(minutes=41_760)  # Graph's limit for users and groups
LIFETIME: Final = MAX_LIFETIME - timedelta(hours=1)
RENEW_WHEN_LEFT: Final = timedelta(days=14)
UNHEALTHY_WHEN_LEFT: Final = timedelta(hours=24)
CHANGE_TYPES: Final = "updated,deleted"
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SubscriptionConfig:
    tenant_id: str
    graph_base_url: str
    notification_url: str | None
    resources: tuple[Resource, ...]

    @classmethod
    def from_settings(cls, settings: Settings) -> SubscriptionConfig:
        groups = settings.discovery_groups != "none"
        return cls(
            tenant_id=settings.tenant_id,
            graph_base_url=settings.graph_base_url,
            notification_url=settings.graph_notification_url,
            resources=("users", "groups") if groups else ("users",),
        )

    @property
    def wanted(self) -> tuple[Resource, ...]:
        """The resources that should have a subscription: none without a notification URL."""
        return self.resources if self.notification_url else ()


async def maintain_subscriptions(
    config: SubscriptionConfig, storage: Storage | None = None, now: datetime | None = None
) -> dict[Resource, str]:
    """Create, renew or remove each resource's subscription; returns what was done per resource.

    A failure for one resource is recorded in its row and does not stop the others.
    """
    book = _Book(await (storage or get_storage()).table(GRAPH_SUBSCRIPTIONS), config.tenant_id)
    now = now or datetime.now(UTC)
    done: dict[Resource, str] = {}
    async with graph_client(config.graph_base_url) as graph:
        keeper = _Keeper(config, book, graph)
        for resource in RESOURCES:
            try:
                done[resource] = await keeper.maintain(resource, now)
            except GraphError as error:
                await book.merge(resource, lastError=str(error), lastErrorAt=now)
                _log.warning(
                    "Graph subscription for %s not maintained: %s",
                    resource,
                    error,
                    extra={"tenantId": config.tenant_id},
                )
                done[resource] = "failed"
    return done


async def handle_lifecycle(
    config: SubscriptionConfig,
    resource: Resource,
    event: Lifecycle,
    storage: Storage | None = None,
) -> bool:
    """Act on a lifecycle notification for `resource`'s subscription; True if a delta must run
    (the subscription was removed, or notifications were missed)."""
    book = _Book(await (storage or get_storage()).table(GRAPH_SUBSCRIPTIONS), config.tenant_id)
    now = datetime.now(UTC)
    await book.merge(resource, lastLifecycleEvent=event, lastLifecycleEventAt=now)
    if event == "missed":
        return True
    if resource not in config.wanted:
        return False
    async with graph_client(config.graph_base_url) as graph:
        keeper = _Keeper(config, book, graph)
        if event == "reauthorizationRequired":
            await keeper.renew(resource, await book.read(resource), now)
            return False
        await keeper.create(resource, await book.read(resource), now)
    return True


async def check_client_state(
    tenant_id: str,
    subscription_id: str | None,
    client_state: str | None,
    storage: Storage | None = None,
) -> Resource | None:
    """The resource whose subscription sent this notification, if its `clientState` is ours;
    None otherwise (unknown subscription, missing or wrong clientState)."""
    if not subscription_id or not client_state:
        return None
    book = _Book(await (storage or get_storage()).table(GRAPH_SUBSCRIPTIONS), tenant_id)
    for resource in RESOURCES:
        row = await book.read(resource)
        if row.get("subscriptionId") != subscription_id:
            continue
        kept = str(row.get("clientState") or "")
        if kept and hmac.compare_digest(kept.encode(), client_state.encode()):
            return resource
        return None
    return None


async def subscription_health(
    config: SubscriptionConfig, storage: Storage | None = None, now: datetime | None = None
) -> tuple[bool, list[dict[str, Any]]]:
    """(healthy, each wanted subscription's state). Unhealthy: one expires within 24 hours
    (a successful renewal would have moved its expiry ~29 days out)."""
    book = _Book(await (storage or get_storage()).table(GRAPH_SUBSCRIPTIONS), config.tenant_id)
    now = now or datetime.now(UTC)
    healthy = True
    details: list[dict[str, Any]] = []
    for resource in config.wanted:
        row = await book.read(resource)
        expires = _aware(row.get("expirationDateTime"))
        ok = expires is not None and expires - now > UNHEALTHY_WHEN_LEFT
        healthy = healthy and (ok or not row.get("subscriptionId"))
        details.append(
            {
                "resource": resource,
                "subscriptionId": row.get("subscriptionId"),
                "expirationDateTime": _rfc3339(expires),
                "lastRenewalAt": _rfc3339(_aware(row.get("lastRenewalAt"))),
                "lastError": row.get("lastError") or None,
                "lastLifecycleEvent": row.get("lastLifecycleEvent"),
                "healthy": ok,
            }
        )
    return healthy, details


class _Book:
    """The tenant's `GraphSubscriptions` rows."""

    def __init__(self, table: TableClient, tenant_id: str) -> None:
        self._table = table
        self._tenant_id = tenant_id

    async def read(self, resource: Resource) -> Mapping[str, Any]:
        try:
            async with translate_errors():
                return await self._table.get_entity(self._tenant_id, resource)
        except ResourceNotFoundError:
            return {}

    async def merge(self, resource: Resource, **columns: Any) -> None:
        row = {"PartitionKey": self._tenant_id, "RowKey": resource} | columns
        async with translate_errors():
            await self._table.upsert_entity(row, mode=UpdateMode.MERGE)

    async def remove(self, resource: Resource) -> None:
        async with translate_errors():
            await self._table.delete_entity(self._tenant_id, resource)


class _Keeper:
    def __init__(self, config: SubscriptionConfig, book: _Book, graph: DiscoveryGraph) -> None:
        self._config = config
        self._book = book
        self._graph = graph
        self._ids = {"tenantId": config.tenant_id}

    async def maintain(self, resource: Resource, now: datetime) -> str:
        row = await self._book.read(resource)
        if resource not in self._config.wanted:
            if not row:
                return "none"
            await self._delete(row)
            await self._book.remove(resource)
            return "removed"
        if not row.get("subscriptionId") or row.get("notificationUrl") != (
            self._config.notification_url
        ):
            if row.get("subscriptionId"):
                await self._delete(row)
            await self.create(resource, row, now)
            return "created"
        expires = _aware(row.get("expirationDateTime"))
        if expires is None or expires - now < RENEW_WHEN_LEFT:
            return await self.renew(resource, row, now)
        return "kept"

    async def create(self, resource: Resource, row: Mapping[str, Any], now: datetime) -> None:
        client_state = str(row.get("clientState") or "") or secrets.token_urlsafe(48)
        # Kept before Graph knows it: the first notification may beat the answer.
        await self._book.merge(resource, clientState=client_state)
        expires = now + LIFETIME
        answer = await self._graph.send(
            Method.POST,
            "/subscriptions",
            {
                "changeType": CHANGE_TYPES,
                "notificationUrl": self._config.notification_url,
                "lifecycleNotificationUrl": self._config.notification_url,
                "resource": resource,
                "expirationDateTime": _rfc3339(expires),
                "clientState": client_state,
            },
        )
        subscription_id = str((answer or {}).get("id") or "")
        if not subscription_id:
            raise GraphError("Graph created a subscription without an id")
        await self._book.merge(
            resource,
            subscriptionId=subscription_id,
            notificationUrl=self._config.notification_url,
            expirationDateTime=_answered_expiry(answer, expires),
            createdAt=now,
            lastRenewalAt=now,
            lastError="",
        )
        _log.info(
            "Graph subscription created for %s",
            resource,
            extra=self._ids | {"subscriptionId": subscription_id},
        )

    async def renew(self, resource: Resource, row: Mapping[str, Any], now: datetime) -> str:
        subscription_id = str(row.get("subscriptionId") or "")
        if not subscription_id:
            await self.create(resource, row, now)
            return "created"
        expires = now + LIFETIME
        try:
            answer = await self._graph.send(
                Method.PATCH,
                f"/subscriptions/{subscription_id}",
                {"expirationDateTime": _rfc3339(expires)},
            )
        except GraphNotFound:
            _log.warning(
                "Graph no longer knows the %s subscription: creating it again",
                resource,
                extra=self._ids | {"subscriptionId": subscription_id},
            )
            await self.create(resource, row, now)
            return "recreated"
        await self._book.merge(
            resource,
            expirationDateTime=_answered_expiry(answer, expires),
            lastRenewalAt=now,
            lastError="",
        )
        _log.info(
            "Graph subscription renewed for %s",
            resource,
            extra=self._ids | {"subscriptionId": subscription_id},
        )
        return "renewed"

    async def _delete(self, row: Mapping[str, Any]) -> None:
        with contextlib.suppress(GraphNotFound):
            await self._graph.send(Method.DELETE, f"/subscriptions/{row['subscriptionId']}")


def _answered_expiry(answer: Mapping[str, Any] | None, asked: datetime) -> datetime:
    """Graph's own expirationDateTime when it sends one (it may shorten what was asked)."""
    value = (answer or {}).get("expirationDateTime")
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return asked
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    return asked


def _aware(value: Any) -> datetime | None:
    if not isinstance(value, datetime):
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _rfc3339(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
