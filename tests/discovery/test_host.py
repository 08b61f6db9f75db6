"""Discovery through the development host: timers, Event Grid, the continuation queue, a killed
host, and the admin runs view. Each test has its own Azurite (module), because the host polls
`discovery-continue` and another test's host would drop a message for a tenant not its own."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from azure.core.exceptions import ResourceNotFoundError

from devhost.azurite import StorageAccount
from devtools.fakes.entra import ADMIN_ROLE, EntraIssuer
from devtools.fakes.graph import FakeGraph
from devtools.fakes.graph_groups import Subscription, graph_event
from devtools.fakes.identity import FakeManagedIdentity
from shared.names import GRAPH_SUBSCRIPTIONS
from shared.storage import Storage
from tests.discovery.conftest import (
    LIST_PAGE,
    assert_mirrors,
    make_graph,
    run_rows,
    state_row,
    wait_until,
)
from tests.discovery.test_engine import change_directory
from tests.discovery.test_groups import assert_groups_mirror, member_rows
from tests.support.devhost import DevHostProcess
from tests.support.settings import product_env


@pytest.fixture(scope="module")
def issuer() -> Iterator[EntraIssuer]:
    with EntraIssuer() as server:
        yield server


@dataclass
class Hosted:
    tenant: str
    graph: FakeGraph
    storage: Storage
    env: dict[str, str]
    http: httpx.AsyncClient

    async def trigger(self, host: DevHostProcess, function: str) -> None:
        response = await self.http.post(
            host.url(f"/admin/functions/{function}"), json={"input": ""}
        )
        assert response.status_code == 202, response.text

    async def publish(self, host: DevHostProcess, events: Any, *, cloud: bool) -> None:
        content_type = "application/cloudevents+json" if cloud else "application/json"
        response = await self.http.post(
            host.url("/runtime/webhooks/eventgrid?functionName=discovery_events"),
            json=events,
            headers={"aeg-event-type": "Notification", "Content-Type": content_type},
        )
        assert response.status_code in (200, 202), response.text + host.output()[-3000:]

    async def newest_run(self, **expected: Any) -> dict[str, Any] | None:
        runs = await run_rows(self.storage, self.tenant)
        if runs and all(runs[0].get(k) == v for k, v in expected.items()):
            return runs[0]
        return None

    async def runs_settled(self, count: int) -> list[dict[str, Any]] | None:
        runs = await run_rows(self.storage, self.tenant)
        done = [r for r in runs if r["status"] in ("succeeded", "failed")]
        return runs if len(runs) == count and len(done) == count else None


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


HostedFactory = Callable[..., contextlib.AbstractContextManager[Hosted]]


@pytest.fixture
def hosting(
    own_account: StorageAccount,
    own_storage: Storage,
    identity: FakeManagedIdentity,
    http: httpx.AsyncClient,
    tenant: str,
) -> HostedFactory:
    """`hosting(users, graph_options=None, **settings)`: a fresh tenant's Graph of `users`
    (FakeGraph options such as page sizes) and the host's settings. Graph's pages hold 100 users
    here, not 999: a few hundred users give a real tenant's page counts."""

    @contextlib.contextmanager
    def hosted(
        users: int, graph_options: dict[str, int] | None = None, **extra: str
    ) -> Iterator[Hosted]:
        options = {"list_max_page": LIST_PAGE} | (graph_options or {})
        with make_graph(identity, users, **options) as graph:
            env = product_env(
                own_account.connection_string,
                AAD_TENANT_ID=tenant,
                GRAPH_BASE_URL=graph.graph_base_url,
                **identity.environment(),
                # A pending run waits 15 s in production for the rest of a burst; 1 s here.
                **({"DISCOVERY_COALESCE_SECONDS": "1"} | extra),
            )
            yield Hosted(tenant, graph, own_storage, env, http)

    return hosted


NOTIFICATION_URL = (
    "EventGrid:?azuresubscriptionid=8f4b2c1d-3e5f-4a6b-9c7d-0e1f2a3b4c5d"
    "&resourcegroup=rg-cmboot&partnertopic=graph-cmboot&location=westeurope"
)


async def as_awaitable(value: bool) -> bool:
    return value


async def subscribed(
    storage: Storage, tenant: str, graph: FakeGraph, resource: str
) -> tuple[Subscription, str]:
    """The live Graph subscription for `resource` and the clientState the app keeps for it."""

    async def recorded() -> dict[str, Any] | None:
        table = await storage.table(GRAPH_SUBSCRIPTIONS)
        try:
            row = await table.get_entity(tenant, resource)
        except ResourceNotFoundError:
            return None
        return dict(row) if row.get("subscriptionId") else None

    row = await wait_until(recorded, 20, f"a {resource} subscription is recorded")
    return graph.subscriptions()[row["subscriptionId"]], row["clientState"]


def custom_event(event_type: str, data: Any) -> dict[str, Any]:
    """An Event Grid schema event, as `az eventgrid event publish` sends one."""
    return {
        "id": str(uuid.uuid4()),
        "eventType": event_type,
        "subject": "discovery",
        "eventTime": datetime.now(UTC).isoformat(),
        "dataVersion": "1.0",
        "data": data,
    }


async def test_timer_event_grid_and_admin_runs_view(
    hosting: HostedFactory,
    own_storage: Storage,
    issuer: EntraIssuer,
    http: httpx.AsyncClient,
    tenant: str,
) -> None:
    with hosting(
        150, AAD_AUTHORITY_HOST=issuer.authority_host, GRAPH_NOTIFICATION_URL=NOTIFICATION_URL
    ) as hosted:
        graph = hosted.graph
        with DevHostProcess(hosted.env) as host:
            await hosted.trigger(host, "graph_subscriptions")
            await hosted.trigger(host, "discovery_full")
            await wait_until(
                lambda: hosted.newest_run(mode="full", trigger="timer", status="succeeded"),
                30,
                "the full timer run succeeds",
            )
            await assert_mirrors(own_storage, tenant, graph)

            changed = change_directory(graph)
            subscription, client_state = await subscribed(own_storage, tenant, graph, "users")
            # A notification without the subscription's clientState is ignored (and logged).
            forged = graph_event(
                tenant,
                "Microsoft.Graph.UserUpdated",
                subscription,
                client_state="guessed-client-state",
                resource_id=changed["renamed"],
            )
            await hosted.publish(host, forged, cloud=True)
            await wait_until(
                lambda: as_awaitable("clientState does not match" in host.output()),
                10,
                "the forged notification is logged",
            )
            assert len(await run_rows(own_storage, tenant)) == 1
            event = graph_event(
                tenant,
                "Microsoft.Graph.UserUpdated",
                subscription,
                client_state=client_state,
                resource_id=changed["renamed"],
            )
            await hosted.publish(host, event, cloud=True)
            await wait_until(
                lambda: hosted.newest_run(mode="delta", trigger="eventgrid", status="succeeded"),
                30,
                "a Graph notification runs a delta",
            )
            await assert_mirrors(own_storage, tenant, graph)

            # A batch: ignored type, malformed and hostile events (a type of the wrong JSON type,
            # a time nobody can read, data nested too deeply), then a forced full run. The
            # delivery is acknowledged (nothing to redeliver); only the last one starts a run.
            graph.hard_delete(graph.user_ids()[20])
            await hosted.publish(
                host,
                [
                    custom_event("Microsoft.Storage.BlobCreated", {"url": "x"}),
                    custom_event("CMBootstrap.DiscoveryRequested", {"mode": "sideways"}),
                    custom_event("CMBootstrap.DiscoveryRequested", "not json {"),
                    custom_event("CMBootstrap.DiscoveryRequested", "[" * 5000 + "]" * 5000),
                    {**custom_event("x", {"mode": "full"}), "eventType": ["x"]},
                    {**custom_event("CMBootstrap.DiscoveryRequested", {}), "eventTime": 7},
                    "not an event",
                    custom_event("CMBootstrap.DiscoveryRequested", {"mode": "full"}),
                ],
                cloud=False,
            )
            runs = await wait_until(lambda: hosted.runs_settled(3), 30, "three runs recorded")
            assert (runs[0]["mode"], runs[0]["trigger"]) == ("full", "eventgrid")
            await assert_mirrors(own_storage, tenant, graph)
            log = host.output()
            assert "malformed Event Grid event ignored" in log
            assert "not for discovery" in log
            assert client_state not in log
            assert "guessed-client-state" not in log

            await check_runs_view(host, http, issuer, tenant)


async def check_runs_view(
    host: DevHostProcess, http: httpx.AsyncClient, issuer: EntraIssuer, tenant: str
) -> None:
    url = host.url("/api/discovery/runs")
    anonymous = await http.get(url)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert anonymous.headers["Content-Type"].startswith("application/problem+json")

    no_role = issuer.mint_access_token(tenant_id=tenant)
    forbidden = await http.get(url, headers={"Authorization": f"Bearer {no_role}"})
    assert forbidden.status_code == 403
    app_only = issuer.mint_access_token(tenant_id=tenant, roles=(ADMIN_ROLE,), scp=None)
    refused = await http.get(url, headers={"Authorization": f"Bearer {app_only}"})
    assert refused.status_code == 403
    assert "app-only" in refused.json()["detail"]

    admin = {
        "Authorization": f"Bearer {issuer.mint_access_token(tenant_id=tenant, roles=(ADMIN_ROLE,))}"
    }
    listed = await http.get(url, headers=admin)
    assert listed.status_code == 200, listed.text
    runs = listed.json()["runs"]
    assert [(r["mode"], r["trigger"], r["status"]) for r in runs] == [
        ("full", "eventgrid", "succeeded"),
        ("delta", "eventgrid", "succeeded"),
        ("full", "timer", "succeeded"),
    ]
    assert runs[2]["upserts"] == 150
    assert listed.json()["continuation"] is None

    first = (await http.get(url, params={"pageSize": "2"}, headers=admin)).json()
    assert [r["runId"] for r in first["runs"]] == [r["runId"] for r in runs[:2]]
    rest = await http.get(
        url, params={"pageSize": "2", "continuation": first["continuation"]}, headers=admin
    )
    assert [r["runId"] for r in rest.json()["runs"]] == [runs[2]["runId"]]
    assert rest.json()["continuation"] is None

    by_next = await http.get(url, params={"pageSize": "2", "next": first["next"]}, headers=admin)
    assert by_next.json()["runs"] == rest.json()["runs"]

    bad = await http.get(url, params={"pageSize": "0", "continuation": "x"}, headers=admin)
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"pageSize", "continuation"}


async def test_time_budget_continues_through_the_queue(
    hosting: HostedFactory, own_storage: Storage, tenant: str
) -> None:
    with hosting(450, DISCOVERY_TIME_BUDGET_SECONDS="5") as hosted:
        graph = hosted.graph
        graph.slow_next(1.5, times=5, on="list")  # five pages of 100, 1.5 s each
        with DevHostProcess(hosted.env) as host:
            await hosted.trigger(host, "discovery_full")
            run = await wait_until(
                lambda: hosted.newest_run(status="succeeded"), 60, "the run finishes"
            )
        assert run["invocations"] >= 2  # the continuation message resumed it
        assert (run["mode"], run["trigger"], run["pages"], run["upserts"]) == (
            "full",
            "timer",
            5,
            450,
        )
        assert len(await run_rows(own_storage, tenant)) == 1
        await assert_mirrors(own_storage, tenant, graph)


async def test_killed_host_run_is_resumed_by_the_next_trigger(
    hosting: HostedFactory, own_storage: Storage, tenant: str
) -> None:
    with hosting(301, DISCOVERY_LEASE_SECONDS="5") as hosted:
        graph = hosted.graph
        graph.slow_next(1.5, times=4, on="list")

        async def one_page_written() -> dict[str, Any] | None:
            try:
                state = await state_row(own_storage, tenant)
            except Exception:
                return None
            return state if state.get("runPages", 0) >= 1 else None

        async def pending() -> dict[str, Any] | None:
            state = await state_row(own_storage, tenant)
            return state if state.get("pendingRequests") else None

        with DevHostProcess(hosted.env) as host:
            await hosted.trigger(host, "discovery_full")
            state = await wait_until(one_page_written, 30, "a page is checkpointed")
            # An overlapping trigger coalesces: it waits as a pending request, the run goes on.
            await hosted.publish(
                host, custom_event("CMBootstrap.DiscoveryRequested", {"mode": "delta"}), cloud=False
            )
            overlap = await wait_until(pending, 10, "the overlapping event is pending")
            host.kill()
        run_id = state["runId"]
        assert (overlap["pendingTrigger"], overlap["pendingMode"]) == ("eventgrid", "delta")
        assert overlap["runId"] == run_id

        async def lease_expired() -> bool:
            state = await state_row(own_storage, tenant)
            return bool(state["leaseExpiresAt"] < datetime.now(UTC))

        await wait_until(lease_expired, 15, "the dead host's lease expires")
        with DevHostProcess(hosted.env) as host:
            await hosted.trigger(host, "discovery_delta")
            # The resumed run, then one run for the pending event and the delta timer.
            runs = await wait_until(
                lambda: hosted.runs_settled(2), 60, "the run is resumed, the pending one runs"
            )
        assert [(r["mode"], r["trigger"], r["requests"]) for r in runs[:1]] == [
            ("delta", "eventgrid", 2)
        ]
        run = next(r for r in runs if r["RowKey"] == run_id)
        assert run["status"] == "succeeded"
        assert (run["mode"], run["pages"], run["upserts"], run["invocations"]) == (
            "full",
            4,
            301,
            2,
        )
        await assert_mirrors(own_storage, tenant, graph)


async def test_group_discovery_survives_a_killed_host_and_follows_graph_events(
    hosting: HostedFactory,
    own_storage: Storage,
    issuer: EntraIssuer,
    http: httpx.AsyncClient,
    tenant: str,
) -> None:
    options = {"group_page_size": 4, "member_chunk": 20}
    settings = {
        "DISCOVERY_GROUPS": "all",
        "DISCOVERY_LEASE_SECONDS": "5",
        "GRAPH_NOTIFICATION_URL": NOTIFICATION_URL,
        "AAD_AUTHORITY_HOST": issuer.authority_host,
    }
    with hosting(400, options, **settings) as hosted:
        graph = hosted.graph
        users = graph.user_ids()
        groups = [
            graph.add_group(f"Group {i:02d}", members=dict.fromkeys(users[i : i + 45], "user"))
            for i in range(40)
        ]
        graph.add_member(groups[0], groups[1], "group")  # nested
        graph.slow_next(1.0, times=2, on="groups")  # the page before the kill and the next

        async def groups_checkpointed() -> dict[str, Any] | None:
            try:
                state = await state_row(own_storage, tenant, "groups")
            except ResourceNotFoundError:
                return None
            return state if state.get("runPages", 0) >= 1 else None

        with DevHostProcess(hosted.env) as host:
            await hosted.trigger(host, "graph_subscriptions")
            await hosted.trigger(host, "discovery_full")
            state = await wait_until(groups_checkpointed, 30, "a page of groups is written")
            host.kill()  # kill -9 in the middle of the group run

        async def lease_expired() -> bool:
            state = await state_row(own_storage, tenant, "groups")
            return bool(state["leaseExpiresAt"] < datetime.now(UTC))

        await wait_until(lease_expired, 15, "the dead host's lease expires")
        with DevHostProcess(hosted.env) as host:
            await hosted.trigger(host, "discovery_delta")

            async def groups_run(**expected: Any) -> dict[str, Any] | None:
                runs = await run_rows(own_storage, tenant)
                return next(
                    (
                        r
                        for r in runs
                        if r["resource"] == "groups"
                        and all(r.get(k) == v for k, v in expected.items())
                    ),
                    None,
                )

            run = await wait_until(
                lambda: groups_run(RowKey=state["runId"], status="succeeded"),
                60,
                "the killed group run is resumed and finishes",
            )
            assert (run["mode"], run["invocations"]) == ("full", 2)
            await assert_groups_mirror(own_storage, tenant, graph)

            # A membership removed in Entra ID: Graph's group notification starts a group delta.
            graph.remove_member(groups[5], users[10])
            subscription, client_state = await subscribed(own_storage, tenant, graph, "groups")
            event = graph_event(
                tenant,
                "Microsoft.Graph.GroupUpdated",
                subscription,
                client_state=client_state,
                resource_id=groups[5],
            )
            await hosted.publish(host, event, cloud=True)

            async def member_removed() -> bool:
                rows = await member_rows(own_storage, groups[5])
                return bool(rows[users[10]]["isDeleted"])

            # The event's delta (or the pending one it joined, after the resume) removes it.
            await wait_until(member_removed, 30, "a group delta removes the membership")
            # The run row says succeeded a moment after its last page is written.
            await wait_until(
                lambda: groups_run(mode="delta", status="succeeded"), 10, "the delta run succeeds"
            )
            await assert_groups_mirror(own_storage, tenant, graph)

            # Graph removed the subscription: the lifecycle event recreates it and runs a delta.
            graph.remove_subscription(subscription.id)
            graph.add_member(groups[6], users[0], "user")
            removed = graph_event(
                tenant,
                "Microsoft.Graph.SubscriptionRemoved",
                subscription,
                client_state=client_state,
                lifecycle="subscriptionRemoved",
            )
            await hosted.publish(host, removed, cloud=True)

            async def recreated() -> bool:
                new, _ = await subscribed(own_storage, tenant, graph, "groups")
                return new.id != subscription.id

            await wait_until(recreated, 20, "the removed subscription is recreated")

            async def member_added() -> bool:
                rows = await member_rows(own_storage, groups[6])
                return users[0] in rows and not rows[users[0]]["isDeleted"]

            await wait_until(member_added, 30, "the delta after the removal ran")
            await check_groups_view(host, http, issuer, tenant, len(groups))


async def check_groups_view(
    host: DevHostProcess, http: httpx.AsyncClient, issuer: EntraIssuer, tenant: str, count: int
) -> None:
    url = host.url("/api/groups")
    assert (await http.get(url)).status_code == 401
    token = issuer.mint_access_token(tenant_id=tenant, roles=(ADMIN_ROLE,))
    admin = {"Authorization": f"Bearer {token}"}
    seen: list[dict[str, Any]] = []
    params = {"pageSize": "15"}
    while True:
        page = await http.get(url, params=params, headers=admin)
        assert page.status_code == 200, page.text
        seen.extend(page.json()["groups"])
        if page.json()["next"] is None:
            break
        params["next"] = page.json()["next"]
    assert len(seen) == count
    assert len({g["groupId"] for g in seen}) == count
    assert all(g["securityEnabled"] is True and g["isDeleted"] is False for g in seen)
    bad = await http.get(url, params={"next": "x"}, headers=admin)
    assert bad.status_code == 400
    assert bad.json()["errors"][0]["field"] == "next"


async def test_a_burst_of_100_events_coalesces(
    hosting: HostedFactory, own_storage: Storage, tenant: str
) -> None:
    with hosting(300, DISCOVERY_COALESCE_SECONDS="5") as hosted:
        hosted.graph.slow_next(2.0, on="list")
        requested = custom_event("CMBootstrap.DiscoveryRequested", {"mode": "delta"})
        with DevHostProcess(hosted.env) as host:
            slots = asyncio.Semaphore(8)

            async def deliver() -> None:
                async with slots:
                    await hosted.publish(host, requested | {"id": str(uuid.uuid4())}, cloud=False)

            started = time.monotonic()
            await asyncio.gather(*(deliver() for _ in range(100)))
            delivered_in = time.monotonic() - started

            async def all_served() -> list[dict[str, Any]] | None:
                runs = await run_rows(own_storage, tenant)
                state = await state_row(own_storage, tenant)
                settled = all(r["status"] == "succeeded" for r in runs)
                served = sum(r["requests"] for r in runs) == 100
                return runs if settled and served and "runId" not in state else None

            runs = await wait_until(all_served, 60, "every request is served")
        assert delivered_in < 30
        assert 2 <= len(runs) <= 3  # one running and one pending, a straggler at most
        runs.sort(key=lambda r: r["startedAt"])
        for earlier, later in itertools.pairwise(runs):
            assert earlier["finishedAt"] <= later["startedAt"]
        await assert_mirrors(own_storage, tenant, hosted.graph)
