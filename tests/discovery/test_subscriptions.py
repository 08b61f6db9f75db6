"""Graph change-notification subscriptions kept alive, against the loopback Graph and Azurite."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from azure.data.tables import UpdateMode

from devtools.fakes.graph import FakeGraph
from devtools.fakes.identity import FakeManagedIdentity
from shared.discovery import (
    SubscriptionConfig,
    check_client_state,
    handle_lifecycle,
    maintain_subscriptions,
    subscription_health,
)
from shared.names import GRAPH_SUBSCRIPTIONS
from shared.storage import Storage
from tests.discovery.conftest import make_graph

URL = (
    "EventGrid:?azuresubscriptionid=8f4b2c1d-3e5f-4a6b-9c7d-0e1f2a3b4c5d"
    "&resourcegroup=rg&partnertopic=graph&location=westeurope"
)
MAX_LIFETIME = timedelta(minutes=41_760)


def config_for(graph: FakeGraph, tenant: str, **overrides: Any) -> SubscriptionConfig:
    config = SubscriptionConfig(tenant, graph.graph_base_url, URL, ("users", "groups"))
    return dataclasses.replace(config, **overrides)


async def row(storage: Storage, tenant: str, resource: str) -> dict[str, Any]:
    table = await storage.table(GRAPH_SUBSCRIPTIONS)
    return dict(await table.get_entity(tenant, resource))


async def expire_soon(storage: Storage, tenant: str, graph: FakeGraph, resource: str) -> str:
    """Both Graph and the app's row see the subscription expiring in two days."""
    soon = datetime.now(UTC) + timedelta(days=2)
    subscription_id = (await row(storage, tenant, resource))["subscriptionId"]
    graph.set_subscription_expiry(subscription_id, soon)
    table = await storage.table(GRAPH_SUBSCRIPTIONS)
    await table.upsert_entity(
        {"PartitionKey": tenant, "RowKey": resource, "expirationDateTime": soon},
        mode=UpdateMode.MERGE,
    )
    return str(subscription_id)


async def test_creates_renews_before_expiry_and_keeps_the_secret(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 0) as graph:
        config = config_for(graph, tenant)
        started = datetime.now(UTC)
        assert await maintain_subscriptions(config, storage) == {
            "users": "created",
            "groups": "created",
        }
        live = graph.subscriptions()
        assert sorted(s.resource for s in live.values()) == ["groups", "users"]
        for subscription in live.values():
            kept = await row(storage, tenant, subscription.resource)
            assert kept["subscriptionId"] == subscription.id
            assert subscription.notification_url == subscription.lifecycle_url == URL
            assert subscription.client_state == kept["clientState"]
            assert len(kept["clientState"]) >= 32
            assert subscription.expires - started <= MAX_LIFETIME
            assert subscription.expires - started > MAX_LIFETIME - timedelta(hours=2)
        assert graph.subscription_calls.refused == []

        # Nothing to do while far from expiry; renewed once close to it.
        assert set((await maintain_subscriptions(config, storage)).values()) == {"kept"}
        users_id = await expire_soon(storage, tenant, graph, "users")
        before = await row(storage, tenant, "users")
        done = await maintain_subscriptions(config, storage)
        assert done == {"users": "renewed", "groups": "kept"}
        assert graph.subscription_calls.renewed == 1
        assert graph.subscriptions()[users_id].expires > datetime.now(UTC) + timedelta(days=28)
        after = await row(storage, tenant, "users")
        assert after["clientState"] == before["clientState"]
        assert after["lastRenewalAt"] > before["lastRenewalAt"]
        healthy, details = await subscription_health(config, storage)
        assert healthy
        assert "clientState" not in str(details)
        assert before["clientState"] not in str(details)


async def test_a_subscription_graph_forgot_is_created_again(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 0) as graph:
        config = config_for(graph, tenant, resources=("users",))
        await maintain_subscriptions(config, storage)
        old = await expire_soon(storage, tenant, graph, "users")
        secret = (await row(storage, tenant, "users"))["clientState"]
        graph.set_subscription_expiry(old, datetime.now(UTC) - timedelta(seconds=1))  # lapsed
        assert await maintain_subscriptions(config, storage) == {
            "users": "recreated",
            "groups": "none",
        }
        (new,) = graph.subscriptions().values()
        assert new.id != old
        kept = await row(storage, tenant, "users")
        assert (kept["subscriptionId"], kept["clientState"]) == (new.id, secret)


async def test_an_expiry_within_a_day_is_unhealthy(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 0) as graph:
        config = config_for(graph, tenant, resources=("users",))
        await maintain_subscriptions(config, storage)
        table = await storage.table(GRAPH_SUBSCRIPTIONS)
        await table.upsert_entity(
            {
                "PartitionKey": tenant,
                "RowKey": "users",
                "expirationDateTime": datetime.now(UTC) + timedelta(hours=20),
            },
            mode=UpdateMode.MERGE,
        )
        healthy, (users,) = await subscription_health(config, storage)
        assert not healthy
        assert users["healthy"] is False
        assert users["expirationDateTime"].endswith("Z")


async def test_lifecycle_events_renew_recreate_or_ask_for_a_delta(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 0) as graph:
        config = config_for(graph, tenant)
        await maintain_subscriptions(config, storage)
        assert await handle_lifecycle(config, "users", "reauthorizationRequired", storage) is False
        assert graph.subscription_calls.renewed == 1

        removed = (await row(storage, tenant, "groups"))["subscriptionId"]
        graph.remove_subscription(removed)
        assert await handle_lifecycle(config, "groups", "subscriptionRemoved", storage) is True
        kept = await row(storage, tenant, "groups")
        assert kept["subscriptionId"] != removed
        assert kept["subscriptionId"] in graph.subscriptions()
        assert kept["lastLifecycleEvent"] == "subscriptionRemoved"

        calls = dataclasses.replace(graph.subscription_calls)
        assert await handle_lifecycle(config, "users", "missed", storage) is True
        assert graph.subscription_calls == calls  # a missed notification only needs a delta


async def test_client_state_must_be_the_subscriptions(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 0) as graph:
        config = config_for(graph, tenant)
        await maintain_subscriptions(config, storage)
        kept = await row(storage, tenant, "groups")
        subscription, secret = kept["subscriptionId"], kept["clientState"]
        assert await check_client_state(tenant, subscription, secret, storage) == "groups"
        assert await check_client_state(tenant, subscription, secret[:-1], storage) is None
        assert await check_client_state(tenant, subscription, None, storage) is None
        assert await check_client_state(tenant, "not-ours", secret, storage) is None


async def test_no_notification_url_removes_the_subscriptions(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 0) as graph:
        await maintain_subscriptions(config_for(graph, tenant), storage)
        users_only = config_for(graph, tenant, resources=("users",))
        assert (await maintain_subscriptions(users_only, storage))["groups"] == "removed"
        unset = config_for(graph, tenant, notification_url=None)
        assert (await maintain_subscriptions(unset, storage))["users"] == "removed"
        assert graph.subscriptions() == {}
        assert await subscription_health(unset, storage) == (True, [])
