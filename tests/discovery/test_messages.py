"""What Event Grid events and continuation messages ask for, and how bad ones are refused."""

from __future__ import annotations

import json

import pytest

from shared.discovery import (
    Continuation,
    MalformedContinuation,
    MalformedEvent,
    Resource,
    decide,
    parse_continuation,
    parse_runs_query,
)
from shared.errors import BadRequest
from shared.jobs import Job

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
        ("Microsoft.Graph.GroupUpdated", {"tenantId": TENANT}, None),  # groups not discovered
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


def test_a_job_message_round_trips_and_a_bad_one_says_why() -> None:
    for name in ("profiles", "overview"):
        job = Job(TENANT, name)
        assert json.loads(job.to_json()) == {"tenant": TENANT, "job": name}
        assert parse_continuation(job.to_json()) == job
    job = Job(TENANT, "profiles")
    assert parse_continuation(json.dumps({"job": "profiles", "tenant": TENANT})) == job
    bad = {
        "job is not one of": {"tenant": TENANT, "job": "everything"},
        "tenant": {"job": "profiles"},
        "only tenant and job": {"tenant": TENANT, "job": "profiles", "mode": "full"},
    }
    for says, body in bad.items():
        with pytest.raises(MalformedContinuation, match=says):
            parse_continuation(json.dumps(body))


def test_runs_query_names_bad_fields() -> None:
    assert parse_runs_query(None, None) == (50, None)
    assert parse_runs_query("2", RUN_ID) == (2, RUN_ID)
    with pytest.raises(BadRequest) as raised:
        parse_runs_query("201", "PartitionKey eq 'x'")
    assert set(raised.value.errors) == {"pageSize", "continuation"}


GROUPS_ON: tuple[Resource, ...] = ("users", "groups")


@pytest.mark.parametrize(
    ("event_type", "data", "enabled", "resources"),
    [
        ("CMBootstrap.DiscoveryRequested", {"mode": "delta"}, GROUPS_ON, GROUPS_ON),
        ("CMBootstrap.DiscoveryRequested", {"mode": "full"}, ("users",), ("users",)),
        (
            "CMBootstrap.DiscoveryRequested",
            {"mode": "full", "resource": "groups"},
            GROUPS_ON,
            ("groups",),
        ),
        ("CMBootstrap.DiscoveryRequested", {"mode": "full", "resource": "groups"}, ("users",), ()),
        ("Microsoft.Graph.GroupUpdated", {"tenantId": TENANT}, GROUPS_ON, ("groups",)),
        ("Microsoft.Graph.GroupDeleted", {"tenantId": TENANT}, ("users",), ()),
        ("Microsoft.Graph.UserUpdated", {"tenantId": TENANT}, GROUPS_ON, ("users",)),
    ],
)
def test_event_resources(
    event_type: str, data: object, enabled: tuple[Resource, ...], resources: tuple[str, ...]
) -> None:
    assert decide(event_type, data, TENANT, enabled).resources == resources


@pytest.mark.parametrize(
    ("event_type", "data", "lifecycle"),
    [
        ("Microsoft.Graph.SubscriptionReauthorizationRequired", {}, "reauthorizationRequired"),
        ("Microsoft.Graph.SubscriptionRemoved", {}, "subscriptionRemoved"),
        ("Microsoft.Graph.SubscriptionMissed", {}, "missed"),
        ("Microsoft.Graph.UserUpdated", {"lifecycleEvent": "missed"}, "missed"),
    ],
)
def test_lifecycle_events_carry_what_to_check(
    event_type: str, data: dict[str, str], lifecycle: str
) -> None:
    decision = decide(
        event_type, data | {"subscriptionId": "s1", "clientState": "c1"}, TENANT, GROUPS_ON
    )
    assert (decision.lifecycle, decision.mode, decision.graph) == (lifecycle, None, True)
    assert (decision.subscription_id, decision.client_state) == ("s1", "c1")


def test_a_requested_resource_must_be_users_or_groups() -> None:
    with pytest.raises(MalformedEvent, match="resource"):
        decide("CMBootstrap.DiscoveryRequested", {"mode": "delta", "resource": "devices"}, TENANT)


def test_continuations_name_their_resource_and_old_ones_mean_users() -> None:
    message = Continuation(TENANT, "delta", trigger="pending", resource="groups")
    assert parse_continuation(message.to_json()) == message
    old = parse_continuation(json.dumps({"tenant": TENANT, "mode": "full", "runId": RUN_ID}))
    assert isinstance(old, Continuation)
    assert old.resource == "users"
    with pytest.raises(MalformedContinuation, match="resource"):
        parse_continuation(json.dumps({"tenant": TENANT, "mode": "full", "resource": "devices"}))
