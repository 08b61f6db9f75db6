"""Fuzzing the HTTP API from its OpenAPI document: random values for every documented query
parameter, path segment and report body (hypothesis) get no 5xx and no answer the document does
not describe."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.openapi import openapi_document
from tests.console.conftest import Fleet
from tests.console.test_openapi import check
from tests.reports.helpers import http, report

EXAMPLES = 25
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # the same inputs on every run: a failure reproduces
    database=None,  # nothing written into the worktree
    suppress_health_check=[HealthCheck.too_slow],
)
# Printable text, URL-hostile characters and the odd non-ASCII one.
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=40)


def documented_values(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    """Valid values of a parameter's schema, mixed with arbitrary text."""
    valid: list[str] = [str(v) for v in schema.get("enum", [])]
    if schema.get("type") == "integer":
        valid += [str(schema.get("minimum", 0)), str(schema.get("maximum", 10))]
    if schema.get("format") == "date-time":
        valid += ["2026-11-27T15:04:05Z", "2026-11-27T15:04:05+02:00"]
    choices = [TEXT, st.integers(-(2**40), 2**40).map(str)]
    if valid:
        choices.insert(0, st.sampled_from(valid))
    return st.one_of(*choices)


def query_strategy(path: str) -> st.SearchStrategy[dict[str, str]]:
    parameters = openapi_document()["paths"][path]["get"]["parameters"]
    optional = {p["name"]: documented_values(p["schema"]) for p in parameters if p["in"] == "query"}
    return st.fixed_dictionaries({}, optional=optional)


def no_server_error(answer: Any, path: str, method: str = "get") -> None:
    assert answer.status < 500, (answer.status, answer.body[:300])
    check(answer, path, method)


@FUZZ
@given(query=query_strategy("/api/devices"))
def test_device_list_queries(fleet: Fleet, query: dict[str, str]) -> None:
    url = fleet.service.url("/api/devices?" + urlencode(query))
    no_server_error(http("GET", url, token=fleet.service.admin_token()), "/api/devices")


@FUZZ
@given(query=query_strategy("/api/discovery/runs"))
def test_discovery_run_queries(fleet: Fleet, query: dict[str, str]) -> None:
    url = fleet.service.url("/api/discovery/runs?" + urlencode(query))
    no_server_error(http("GET", url, token=fleet.service.admin_token()), "/api/discovery/runs")


# Segments the route can receive: printable, no '/'. (Control characters and encoded slashes
# never reach the function: the development host's router answers those itself.)
SEGMENT = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=["Cs", "Cc", "Zl", "Zp"]).filter(
        lambda c: c != "/"
    ),
    min_size=1,
    max_size=40,
)


@FUZZ
@given(segment=st.one_of(SEGMENT, st.uuids().map(str)))
def test_device_ids(fleet: Fleet, segment: str) -> None:
    url = fleet.service.url("/api/devices/" + quote(segment, safe=""))
    no_server_error(http("GET", url, token=fleet.service.admin_token()), "/api/devices/{deviceId}")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)


@FUZZ
@given(
    changes=st.dictionaries(
        st.sampled_from([*report().keys(), "userObjectId", "installErrorCode", "extra"]),
        JSON_VALUES,
        max_size=4,
    )
)
def test_report_bodies(fleet: Fleet, changes: dict[str, Any]) -> None:
    # One known device, reported long ago: a body that passes adds no device to the fleet.
    base = report(device_id=fleet.installed_device, reported_at=datetime(2020, 1, 1, tzinfo=UTC))
    body = json.dumps(base | changes, allow_nan=True).encode()
    answer = http(
        "POST", fleet.service.url("/api/reports"), token=fleet.service.device_token(), body=body
    )
    no_server_error(answer, "/api/reports", "post")
