"""Discovery against the loopback Graph, managed identity and Azurite, in process."""

from __future__ import annotations

from shared.discovery import run_discovery
from shared.storage import Storage
from tests.discovery.conftest import assert_mirrors, config_for, make_graph, run_rows, state_row
from tests.fakes.identity import FakeManagedIdentity


async def test_full_then_delta(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 2500) as graph:
        config = config_for(graph, tenant)
        result = await run_discovery("full", "timer", config, storage=storage)
        assert result.status == "succeeded"
        await assert_mirrors(storage, tenant, graph)
        assert graph.stats.requests == {"delta": 1, "list": 3}
        ids = graph.user_ids()
        graph.update_user(ids[0], mail=None, displayName="Renamed")
        graph.soft_delete(ids[1])
        graph.hard_delete(ids[2])
        graph.restore(ids[1])
        graph.soft_delete(ids[3])
        added = graph.add_user(displayName="Newcomer")
        result = await run_discovery("delta", "timer", config, storage=storage)
        assert result.status == "succeeded", result
        await assert_mirrors(storage, tenant, graph)
        runs = await run_rows(storage, tenant)
        assert [r["status"] for r in runs] == ["succeeded", "succeeded"]
        assert runs[0]["mode"] == "delta"
        assert runs[0]["deletes"] == 2
        assert added
        state = await state_row(storage, tenant)
        assert "runId" not in state
        assert state["deltaLink"]
