"""Discovery against the loopback Graph, managed identity and Azurite, in process.

Triggers are covered through the development host in test_host.py; here the engine's paths
(paging, delta, @removed, restore, cleared properties, 410, 429, 503, resets, coalescing) are
driven directly, which is faster and lets a test fail at the exact step.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from devtools.fakes.graph import FakeGraph
from devtools.fakes.identity import FakeManagedIdentity
from shared.discovery import UserWriter, list_runs, run_discovery
from shared.names import AAD_USERS
from shared.storage import Storage
from tests.discovery.conftest import (
    LIST_PAGE,
    assert_mirrors,
    config_for,
    make_graph,
    run_rows,
    state_row,
    user_rows,
    wait_until,
)


def change_directory(graph: FakeGraph) -> dict[str, str]:
    """Every kind of change a delta must carry; returns the ids by what happened to them."""
    ids = graph.user_ids()
    synced, cloud_only = ids[0], ids[2]  # generated users 1 (synced) and 3 (cloud only)
    changed = {
        "renamed": synced,
        "cleared_cloud_only": cloud_only,
        "restored": ids[4],
        "hard_deleted": ids[5],
        "soft_deleted": ids[6],
        "disabled": ids[7],
    }
    graph.update_user(synced, mail=None, displayName="Renamed User")
    graph.update_user(cloud_only, mail=None)
    graph.soft_delete(changed["restored"])
    graph.restore(changed["restored"])
    graph.hard_delete(changed["hard_deleted"])
    graph.soft_delete(changed["soft_deleted"])
    graph.update_user(changed["disabled"], accountEnabled=False)
    changed["added"] = graph.add_user(displayName="Newcomer", mail="newcomer@contoso.example")
    return changed


async def test_full_then_delta_mirrors_every_change(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 250) as graph:
        config = config_for(graph, tenant)
        result = await run_discovery("full", "timer", config, storage=storage)
        assert result.status == "succeeded"
        await assert_mirrors(storage, tenant, graph)
        # latest-then-list: one delta request for the link, then 100 users a page.
        assert graph.stats.requests == {"delta": 1, "list": 3}

        changed = change_directory(graph)
        graph.stats.requests.clear()
        result = await run_discovery("delta", "timer", config, storage=storage)
        assert result.status == "succeeded", result
        await assert_mirrors(storage, tenant, graph)
        assert graph.stats.requests == {"delta": 1}  # cost follows the changes, not the tenant
        rows = await user_rows(storage, tenant)
        assert "mail" not in rows[changed["renamed"]]
        assert "mail" not in rows[changed["cleared_cloud_only"]]
        assert rows[changed["renamed"]]["displayName"] == "Renamed User"
        assert rows[changed["soft_deleted"]]["isDeleted"] is True
        assert rows[changed["hard_deleted"]]["isDeleted"] is True
        assert rows[changed["restored"]]["isDeleted"] is False
        assert rows[changed["disabled"]]["accountEnabled"] is False

        runs = await run_rows(storage, tenant)  # newest first
        assert [(r["mode"], r["status"]) for r in runs] == [
            ("delta", "succeeded"),
            ("full", "succeeded"),
        ]
        assert (runs[0]["pages"], runs[0]["upserts"], runs[0]["deletes"]) == (1, 5, 2)
        assert (runs[1]["pages"], runs[1]["upserts"]) == (3, 250)
        state = await state_row(storage, tenant)
        assert "runId" not in state
        assert state["deltaLink"].startswith(graph.graph_base_url + "/users/delta?")

        # Replaying the same changes (a delta round may repeat them) changes nothing.
        before = await user_rows(storage, tenant)
        graph.update_user(changed["renamed"], displayName="Renamed User")
        assert (await run_discovery("delta", "timer", config, storage=storage)).status == (
            "succeeded"
        )
        assert await user_rows(storage, tenant) == before


async def test_full_run_marks_users_it_no_longer_sees(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 300) as graph:
        config = config_for(graph, tenant)
        assert (await run_discovery("full", "timer", config, storage=storage)).status == (
            "succeeded"
        )
        gone = graph.user_ids()[:3]
        for user_id in gone:
            graph.hard_delete(user_id)
        graph.expire_delta_links()  # the full run must not rely on the delta
        result = await run_discovery("full", "timer", config, storage=storage)
        assert result.status == "succeeded"
        await assert_mirrors(storage, tenant, graph)
        rows = await user_rows(storage, tenant)
        assert all(rows[user_id]["isDeleted"] is True for user_id in gone)
        assert (await run_rows(storage, tenant))[0]["deletes"] == 3


async def test_first_delta_is_a_full_run(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 50) as graph:
        result = await run_discovery("delta", "timer", config_for(graph, tenant), storage=storage)
        assert (result.status, result.mode) == ("succeeded", "full")
        await assert_mirrors(storage, tenant, graph)
        run = (await run_rows(storage, tenant))[0]
        assert "no delta link" in run["fallbackReason"]


async def test_expired_delta_link_falls_back_to_full_and_says_why(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 120) as graph:
        config = config_for(graph, tenant)
        await run_discovery("full", "timer", config, storage=storage)
        change_directory(graph)
        graph.expire_delta_links()
        result = await run_discovery("delta", "timer", config, storage=storage)
        assert (result.status, result.mode) == ("succeeded", "full")
        await assert_mirrors(storage, tenant, graph)
        run = (await run_rows(storage, tenant))[0]
        assert run["status"] == "succeeded"
        assert "410" in run["fallbackReason"]
        assert "syncStateNotFound" in run["fallbackReason"]
        # The new delta link works.
        graph.update_user(graph.user_ids()[10], displayName="After fallback")
        assert (await run_discovery("delta", "timer", config, storage=storage)).mode == "delta"
        await assert_mirrors(storage, tenant, graph)


async def test_fallback_midway_through_a_delta_does_not_keep_what_the_delta_touched(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    """410 on the delta's second page; a user the first page updated is deleted just then.
    The full run that takes over must not count the delta's write as having seen that user."""
    with make_graph(managed_identity_env, 40, delta_page_size=5) as graph:
        config = config_for(graph, tenant)
        await run_discovery("full", "timer", config, storage=storage)
        ids = graph.user_ids()
        for user_id in ids[:10]:
            graph.update_user(user_id, displayName=f"Changed {user_id[:8]}")
        graph.slow_next(0.0, on="delta")  # faults apply in order: the first delta page passes
        graph.fail_next(410, on="delta", then=lambda: graph.hard_delete(ids[0]))
        result = await run_discovery("delta", "timer", config, storage=storage)
        assert (result.status, result.mode) == ("succeeded", "full")
        await assert_mirrors(storage, tenant, graph)
        assert (await user_rows(storage, tenant))[ids[0]]["isDeleted"] is True


async def test_throttling_honours_retry_after(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 150) as graph:
        graph.fail_next(429, retry_after=2, on="list")
        graph.fail_next(503, retry_after=1, on="list")
        started = time.monotonic()
        result = await run_discovery("full", "timer", config_for(graph, tenant), storage=storage)
        elapsed = time.monotonic() - started
        assert result.status == "succeeded"
        assert graph.stats.faults_served["status"] == 2
        assert graph.stats.requests["list"] == 2 + 2  # two pages, each fault retried once
        assert elapsed >= 3.0  # waited Retry-After: 2 s, then 1 s
        await assert_mirrors(storage, tenant, graph)


async def test_connection_resets_beyond_retries_keep_the_checkpoint(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 250) as graph:
        config = config_for(graph, tenant)
        # The first page arrives; the second is cut off mid-body.
        graph.slow_next(0.0, on="list")
        graph.reset_next(on="list", times=1)
        graph.stats.requests.clear()
        failed = await run_discovery("full", "timer", config, storage=storage)
        assert failed.status == "failed"
        assert "connection" in (failed.error or "").lower()
        state = await state_row(storage, tenant)
        assert state["runId"] == failed.run_id
        assert (state["runPages"], state["runUpserts"]) == (1, LIST_PAGE)
        assert "leaseOwner" not in state  # released: the next trigger may resume at once
        run = (await run_rows(storage, tenant))[0]
        assert (run["status"], run["pages"]) == ("failed", 1)

        resumed = await run_discovery("delta", "timer", config, storage=storage)
        assert (resumed.status, resumed.run_id, resumed.mode) == (
            "succeeded",
            failed.run_id,
            "full",
        )
        await assert_mirrors(storage, tenant, graph)
        run = (await run_rows(storage, tenant))[0]
        assert (run["pages"], run["upserts"], run["invocations"]) == (3, 250, 2)
        assert "connection" in run["error"].lower()  # what happened stays in the record


async def test_no_managed_identity_token_fails_the_run_clearly(
    storage: Storage,
    managed_identity_env: FakeManagedIdentity,
    tenant: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IDENTITY_HEADER", "not-the-header")
    with make_graph(managed_identity_env, 10) as graph:
        result = await run_discovery("full", "timer", config_for(graph, tenant), storage=storage)
        assert result.status == "failed"
        assert "no token for Graph" in (result.error or "")
        assert graph.stats.requests["delta"] == 0
        run = (await run_rows(storage, tenant))[0]
        assert (run["status"], run["error"]) == ("failed", result.error)
        assert "leaseOwner" not in await state_row(storage, tenant)


async def test_overlapping_triggers_coalesce(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 200) as graph:
        config = config_for(graph, tenant)
        graph.slow_next(1.0, on="list")
        first = asyncio.create_task(run_discovery("full", "timer", config, storage=storage))

        async def lease_taken() -> bool:
            try:
                return "leaseOwner" in await state_row(storage, tenant)
            except Exception:
                return False

        await wait_until(lease_taken, 10, "the first run holds the lease")
        second = await run_discovery("delta", "eventgrid", config, storage=storage)
        assert second.status == "coalesced"
        assert (await first).status == "succeeded"
        runs = await run_rows(storage, tenant)
        assert [(r["status"], r["requests"]) for r in runs] == [("succeeded", 1)]
        assert (await state_row(storage, tenant))["pendingRequests"] == 1
        # The finished run queued one `pending` message; it starts the run serving the request.
        pending = await run_discovery("full", "pending", config, storage=storage)
        assert (pending.status, pending.mode) == ("succeeded", "delta")
        runs = await run_rows(storage, tenant)
        assert [(r["mode"], r["trigger"], r["requests"]) for r in runs] == [
            ("delta", "eventgrid", 1),
            ("full", "timer", 1),
        ]
        assert "pendingRequests" not in await state_row(storage, tenant)
        again = await run_discovery("delta", "pending", config, storage=storage)
        assert again.status == "ignored"  # nothing left to serve
        await assert_mirrors(storage, tenant, graph)


async def test_partial_delta_objects_never_wipe_unsent_columns(
    storage: Storage, tenant: str
) -> None:
    """With `Prefer: return=minimal` Graph sends only changed properties: merge them, and
    clear exactly the ones sent as null."""
    table = await storage.table(AAD_USERS)
    writer = UserWriter(table, tenant, "0000000000000000001-abcdef")
    full: dict[str, Any] = {
        "id": "u1",
        "displayName": "A",
        "userPrincipalName": "a@contoso.example",
        "mail": "a@contoso.example",
        "mailNickname": "a",
        "onPremisesSecurityIdentifier": None,
        "onPremisesDomainName": None,
        "onPremisesSamAccountName": None,
        "onPremisesDistinguishedName": None,
        "accountEnabled": True,
    }
    await writer.write_complete([full])
    await writer.write_delta([{"id": "u1", "displayName": "B"}])
    await writer.write_delta([{"id": "u1", "mail": None}, {"id": "u1", "mailNickname": "b"}])
    rows = await user_rows(storage, tenant)
    assert rows == {
        "u1": {
            "displayName": "B",
            "userPrincipalName": "a@contoso.example",
            "mailNickname": "b",
            "accountEnabled": True,
            "isDeleted": False,
        }
    }


async def test_a_full_run_reports_its_progress_against_the_last_full_run(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 120) as graph:
        config = config_for(graph, tenant)
        assert (await run_discovery("full", "timer", config, storage=storage)).status == (
            "succeeded"
        )
        first = (await list_runs(tenant, size=1, after=None, storage=storage)).runs[0]
        assert first["progress"] | {"usersPerSecond": None} == {
            "pages": 2,
            "users": 120,
            "expectedUsers": None,  # nothing to compare the first full run with
            "percent": 100,
            "secondsLeft": 0,
            "usersPerSecond": None,
        }
        assert first["startedAt"].endswith("Z")
        # No time budget: the second full run hands over before its first page.
        tight = config_for(graph, tenant, time_budget_seconds=0)
        assert (await run_discovery("full", "timer", tight, storage=storage)).status == (
            "continued"
        )
        running = (await list_runs(tenant, size=1, after=None, storage=storage)).runs[0]
        assert running["status"] == "continued"
        assert running["progress"]["expectedUsers"] == 120
        assert running["progress"]["percent"] == 0
