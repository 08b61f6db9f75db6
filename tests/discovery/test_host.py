"""Discovery through the development host: timers, Event Grid, the continuation queue, a killed
host, and the admin runs view. Each test has its own Azurite (module), because the host polls
`discovery-continue` and another test's host would drop a message for a tenant not its own."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from devhost.azurite import Azurite
from shared.storage import Storage
from tests.discovery.conftest import (
    assert_mirrors,
    make_graph,
    run_rows,
    state_row,
    wait_until,
)
from tests.discovery.test_engine import change_directory
from tests.fakes.entra import ADMIN_ROLE, EntraIssuer
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeManagedIdentity
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
        done = [r for r in runs if r["status"] in ("succeeded", "skipped", "failed")]
        return runs if len(runs) == count and len(done) == count else None


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


HostedFactory = Callable[..., contextlib.AbstractContextManager[Hosted]]


@pytest.fixture
def hosting(
    own_azurite: Azurite,
    own_storage: Storage,
    identity: FakeManagedIdentity,
    http: httpx.AsyncClient,
    tenant: str,
) -> HostedFactory:
    """`hosting(users, **settings)`: a fresh tenant's Graph of `users` and the host's settings."""

    @contextlib.contextmanager
    def hosted(users: int, **extra: str) -> Iterator[Hosted]:
        with make_graph(identity, users) as graph:
            env = product_env(
                own_azurite.connection_string,
                AAD_TENANT_ID=tenant,
                GRAPH_BASE_URL=graph.graph_base_url,
                **identity.environment(),
                **extra,
            )
            yield Hosted(tenant, graph, own_storage, env, http)

    return hosted


def graph_notification(tenant: str, user_id: str) -> dict[str, Any]:
    """A Microsoft Graph change notification as an Event Grid partner event (CloudEvents)."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "type": "Microsoft.Graph.UserUpdated",
        "source": f"/tenants/{tenant}/applications/{uuid.uuid4()}",
        "subject": f"Users/{user_id}",
        "time": datetime.now(UTC).isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "changeType": "updated",
            "clientState": "secret-not-logged",
            "resource": f"Users/{user_id}",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.User",
                "@odata.id": f"Users/{user_id}",
                "id": user_id,
                "organizationId": tenant,
            },
            "subscriptionExpirationDateTime": datetime.now(UTC).isoformat(),
            "subscriptionId": str(uuid.uuid4()),
            "tenantId": tenant,
        },
    }


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
    with hosting(1500, AAD_AUTHORITY_HOST=issuer.authority_host) as hosted:
        graph = hosted.graph
        with DevHostProcess(hosted.env) as host:
            await hosted.trigger(host, "discovery_full")
            await wait_until(
                lambda: hosted.newest_run(mode="full", trigger="timer", status="succeeded"),
                30,
                "the full timer run succeeds",
            )
            await assert_mirrors(own_storage, tenant, graph)

            changed = change_directory(graph)
            await hosted.publish(host, graph_notification(tenant, changed["renamed"]), cloud=True)
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
            assert "secret-not-logged" not in log

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
    assert runs[2]["upserts"] == 1500
    assert listed.json()["continuation"] is None

    first = (await http.get(url, params={"pageSize": "2"}, headers=admin)).json()
    assert [r["runId"] for r in first["runs"]] == [r["runId"] for r in runs[:2]]
    rest = await http.get(
        url, params={"pageSize": "2", "continuation": first["continuation"]}, headers=admin
    )
    assert [r["runId"] for r in rest.json()["runs"]] == [runs[2]["runId"]]
    assert rest.json()["continuation"] is None

    bad = await http.get(url, params={"pageSize": "0", "continuation": "x"}, headers=admin)
    assert bad.status_code == 400
    assert {e["field"] for e in bad.json()["errors"]} == {"pageSize", "continuation"}


async def test_time_budget_continues_through_the_queue(
    hosting: HostedFactory, own_storage: Storage, tenant: str
) -> None:
    with hosting(4000, DISCOVERY_TIME_BUDGET_SECONDS="5") as hosted:
        graph = hosted.graph
        graph.slow_next(1.5, times=5, on="list")  # five pages of 999, 1.5 s each
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
            4000,
        )
        assert len(await run_rows(own_storage, tenant)) == 1
        await assert_mirrors(own_storage, tenant, graph)


async def test_killed_host_run_is_resumed_by_the_next_trigger(
    hosting: HostedFactory, own_storage: Storage, tenant: str
) -> None:
    with hosting(3000, DISCOVERY_LEASE_SECONDS="5") as hosted:
        graph = hosted.graph
        graph.slow_next(1.5, times=4, on="list")

        async def one_page_written() -> dict[str, Any] | None:
            try:
                state = await state_row(own_storage, tenant)
            except Exception:
                return None
            return state if state.get("runPages", 0) >= 1 else None

        async def skipped() -> dict[str, Any] | None:
            runs = await run_rows(own_storage, tenant)
            return next((r for r in runs if r["status"] == "skipped"), None)

        with DevHostProcess(hosted.env) as host:
            await hosted.trigger(host, "discovery_full")
            state = await wait_until(one_page_written, 30, "a page is checkpointed")
            # An overlapping trigger coalesces: recorded as skipped, the run goes on.
            await hosted.publish(
                host, custom_event("CMBootstrap.DiscoveryRequested", {"mode": "delta"}), cloud=False
            )
            overlap = await wait_until(skipped, 10, "the overlapping event is skipped")
            host.kill()
        run_id = state["runId"]
        assert (overlap["trigger"], overlap["mode"]) == ("eventgrid", "delta")
        assert run_id in overlap["error"]

        async def lease_expired() -> bool:
            state = await state_row(own_storage, tenant)
            return bool(state["leaseExpiresAt"] < datetime.now(UTC))

        await wait_until(lease_expired, 15, "the dead host's lease expires")
        with DevHostProcess(hosted.env) as host:
            await hosted.trigger(host, "discovery_delta")
            runs = await wait_until(
                lambda: hosted.runs_settled(2), 60, "the run is resumed and finishes"
            )
        run = next(r for r in runs if r["RowKey"] == run_id)
        assert run["status"] == "succeeded"
        assert (run["mode"], run["pages"], run["upserts"], run["invocations"]) == (
            "full",
            4,
            3000,
            2,
        )
        await assert_mirrors(own_storage, tenant, graph)
