"""What Event Grid events and continuation messages ask for, and how bad ones are refused."""

from __future__ import annotations

import json

import pytest

from shared.discovery import (
    Continuation,
    MalformedContinuation,
    MalformedEvent,
    decide,
    parse_continuation,
    parse_runs_query,
)
from shared.errors import BadRequest

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
RUN_ID = "2516850183599999999-a1b2c3"


@pytest.mark.parametrize(
    ("event_type", "data", "mode"),
    [
        ("Microsoft.Graph.UserUpdated", {"resourceData": {"organizationId": TENANT}}, "delta"),
        ("Microsoft.Graph.UserDeleted", {"tenantId": TENANT.upper()}, "delta"),
        ("Microsoft.Graph.UserUpdated", {}, "delta"),
        ("CMBootstrap.DiscoveryRequested", {"mode": "full"}, "full"),
        ("CMBootstrap.DiscoveryRequested", '{"mode": "delta"}', "delta"),
        ("Microsoft.Graph.GroupUpdated", {"tenantId": TENANT}, None),
        ("Microsoft.Storage.BlobCreated", None, None),
        ("Microsoft.Graph.UserUpdated", {"tenantId": "00000000-0000-0000-0000-000000000000"}, None),
    ],
)
def test_event_decisions(event_type: str, data: object, mode: str | None) -> None:
    assert decide(event_type, data, TENANT).mode == mode


@pytest.mark.parametrize(
    ("event_type", "data", "says"),
    [
        ("CMBootstrap.DiscoveryRequested", {"mode": "sideways"}, "mode"),
        ("CMBootstrap.DiscoveryRequested", "not json {", "not JSON"),
        ("CMBootstrap.DiscoveryRequested", [1, 2], "not a JSON object"),
        ("Microsoft.Graph.UserUpdated", 42, "not a JSON object"),
        ("", {}, "no type"),
        (None, {}, "no type"),
        (42, {}, "type is a JSON number"),
        (["CMBootstrap.DiscoveryRequested"], {"mode": "full"}, "type is a JSON array"),
        ({"a": 1}, {}, "type is a JSON object"),
        (True, {}, "type is a JSON boolean"),
        ("CMBootstrap.DiscoveryRequested", {"mode": ["full"]}, "got mode a JSON array"),
        ("CMBootstrap.DiscoveryRequested", {"mode": "x" * 10_000}, "got mode 'xxx"),
        ("CMBootstrap.DiscoveryRequested", "[" * 100_000 + "]" * 100_000, "not JSON"),
        ("CMBootstrap.DiscoveryRequested", '"\\ud800"', "not a JSON object"),
        ("Microsoft.Graph.UserUpdated", [{"tenantId": TENANT}], "not a JSON object"),
        ("Microsoft.Graph.UserUpdated", "null", "not a JSON object"),
    ],
)
def test_malformed_events_say_why(event_type: object, data: object, says: str) -> None:
    with pytest.raises(MalformedEvent, match=says):
        decide(event_type, data, TENANT)


def test_continuation_round_trip() -> None:
    message = json.dumps({"tenant": TENANT, "runId": RUN_ID, "mode": "full"})
    continuation = parse_continuation(message)
    assert continuation == Continuation(TENANT, "full", RUN_ID, "continuation")
    assert parse_continuation(continuation.to_json()) == continuation
    requested = Continuation(TENANT, "delta", trigger="eventgrid")
    assert parse_continuation(requested.to_json()) == requested


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("{", "not JSON"),
        ("[]", "not a JSON object"),
        (json.dumps({"runId": RUN_ID, "mode": "full"}), "tenant"),
        (json.dumps({"tenant": TENANT, "runId": "../x", "mode": "full"}), "runId"),
        (json.dumps({"tenant": TENANT, "runId": RUN_ID, "mode": "all"}), "mode"),
        (json.dumps({"tenant": TENANT, "mode": "full", "trigger": "timer"}), "trigger"),
    ],
)
def test_malformed_continuations_say_why(text: str, says: str) -> None:
    with pytest.raises(MalformedContinuation, match=says):
        parse_continuation(text)


def test_runs_query_names_bad_fields() -> None:
    assert parse_runs_query(None, None) == (50, None)
    assert parse_runs_query("2", RUN_ID) == (2, RUN_ID)
    with pytest.raises(BadRequest) as raised:
        parse_runs_query("201", "PartitionKey eq 'x'")
    assert set(raised.value.errors) == {"pageSize", "continuation"}
