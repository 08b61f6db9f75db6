"""`GET /api/openapi.json` is a valid OpenAPI 3.1 document of every route, and the host's real
answers (success and problem alike) are what it says: status, content type and schema."""

from __future__ import annotations

import ast
import json
import re
import uuid
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate

from shared.openapi import openapi_document
from tests.console.conftest import Fleet
from tests.reports.helpers import Response, http, report
from tests.support.devhost import REPO_ROOT


def documented_paths() -> set[str]:
    return set(openapi_document()["paths"])


def routed_paths() -> set[str]:
    """Every `@bp.route(route=...)` of the blueprints, as OpenAPI paths."""
    found: set[str] = set()
    for source in (REPO_ROOT / "blueprints").glob("*.py"):
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "route":
                assert isinstance(node.value, ast.Constant)
                route = str(node.value.value)
                optional = re.fullmatch(r"(?P<base>.*)/\{(?P<name>\w+)\?\}", route)
                if optional:
                    found.add(f"/api/{optional['base']}")
                    route = f"{optional['base']}/{{{optional['name']}}}"
                found.add(f"/api/{route}")
    return found


def test_the_document_is_valid_openapi_3_1() -> None:
    document = openapi_document()
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_every_route_is_documented() -> None:
    routed = routed_paths()
    # jwks/{variant} is served as jwks/signed only; the console's files share one route.
    routed = {path.replace("{variant}", "signed") for path in routed}
    assert routed - documented_paths() == set()


def test_device_endpoints_document_the_device_proof_header() -> None:
    paths = openapi_document()["paths"]
    for path, method in (("/api/bundle", "get"), ("/api/reports", "post")):
        names = [p["name"] for p in paths[path][method]["parameters"]]
        assert "Device-Proof" in names


def check(answer: Response, path: str, method: str = "get") -> Any:
    """Assert `answer` is one the document describes for this operation; return its JSON."""
    document = openapi_document()
    operation = document["paths"][path][method]
    responses = operation["responses"]
    assert str(answer.status) in responses, (answer.status, answer.body[:300])
    described = responses[str(answer.status)]
    if "$ref" in described:
        described = document["components"]["responses"][described["$ref"].rsplit("/", 1)[1]]
    content_type = answer.headers.get("content-type", "").split(";")[0]
    assert content_type in described["content"], (content_type, path)
    schema = described["content"][content_type]["schema"]
    body: Any = answer.body.decode()
    if content_type.endswith("json"):
        body = json.loads(answer.body)
    Draft202012Validator(
        {**schema, "components": document["components"]},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    ).validate(body)
    return body


def test_admin_views_answer_as_documented(fleet: Fleet) -> None:
    service = fleet.service
    admin = service.admin_token()

    def get(path: str, token: str | None = admin) -> Response:
        return http("GET", service.url(path), token=token)

    overview = check(get("/api/devices?summary=overview"), "/api/devices")
    assert overview["total"] == fleet.devices
    check(get("/api/devices?summary=stage"), "/api/devices")
    page = check(get("/api/devices?pageSize=3"), "/api/devices")
    check(get(f"/api/devices?pageSize=3&next={page['next']}"), "/api/devices")
    check(get("/api/devices?diagnosis=not-joined&stage=failed"), "/api/devices")
    detail = check(get(f"/api/devices/{fleet.failed_device}"), "/api/devices/{deviceId}")
    assert {event["kind"] for event in detail["timeline"]} == {"report", "bundle"}
    check(get(f"/api/devices/{uuid.uuid4()}"), "/api/devices/{deviceId}")
    check(get("/api/devices/not-a-guid"), "/api/devices/{deviceId}")
    check(get("/api/devices?stage=done"), "/api/devices")
    check(get("/api/devices", token=None), "/api/devices")
    check(get("/api/devices", token=service.device_token()), "/api/devices")
    runs = check(get("/api/discovery/runs"), "/api/discovery/runs")
    assert runs["runs"][0]["progress"]["percent"] == 49
    check(get("/api/discovery/runs?pageSize=0"), "/api/discovery/runs")


def test_device_and_public_endpoints_answer_as_documented(fleet: Fleet) -> None:
    service = fleet.service
    device = service.device_token()
    nonce = "n" * 16
    bundle = http(
        "GET", service.url(f"/api/bundle?deviceId={uuid.uuid4()}&nonce={nonce}"), token=device
    )
    check(bundle, "/api/bundle")
    check(http("GET", service.url("/api/bundle?deviceId=x"), token=device), "/api/bundle")
    sent = http(
        "POST", service.url("/api/reports"), token=device, body=json.dumps(report()).encode()
    )
    assert check(sent, "/api/reports", "post")["reportId"]
    bad = http("POST", service.url("/api/reports"), token=device, body=b'{"stage": 1}')
    check(bad, "/api/reports", "post")
    huge = http("POST", service.url("/api/reports"), token=device, body=b" " * 70_000)
    check(huge, "/api/reports", "post")
    check(http("GET", service.url("/api/jwks")), "/api/jwks")
    check(http("GET", service.url("/api/health")), "/api/health")
    check(http("GET", service.url("/api/openapi.json")), "/api/openapi.json")
    check(http("GET", service.url("/api/console")), "/api/console")
    config = check(http("GET", service.url("/api/console/config.json")), "/api/console/{file}")
    assert config["signIn"] == "demo"
    check(http("GET", service.url("/api/console/console.js")), "/api/console/{file}")
    check(http("GET", service.url("/api/console/secrets.js")), "/api/console/{file}")


def test_signed_jwks_answers_as_documented(fleet: Fleet) -> None:
    answer = http("GET", fleet.service.url("/api/jwks/signed"))
    if answer.status == 404 and "/api/jwks/{variant}" not in routed_paths():
        pytest.skip("GET /api/jwks/signed is not served by this build yet")
    check(answer, "/api/jwks/signed")


def test_console_files_have_their_type_and_a_strict_policy(fleet: Fleet) -> None:
    for path, content_type in (
        ("/api/console", "text/html"),
        ("/api/console/console.js", "text/javascript"),
        ("/api/console/console.css", "text/css"),
        ("/api/console/msal-browser.js", "text/javascript"),
    ):
        answer = http("GET", fleet.service.url(path))
        assert answer.status == 200, (path, answer.body[:200])
        assert answer.headers["content-type"].startswith(content_type)
        policy = answer.headers["content-security-policy"]
        assert "script-src 'self';" in policy
        assert "style-src 'self';" in policy
        assert "unsafe-inline" not in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
    page = http("GET", fleet.service.url("/api/console")).body.decode()
    assert "<script>" not in page
    assert " style=" not in page
    assert "<style" not in page


def test_no_static_file_outside_the_allow_list(fleet: Fleet) -> None:
    for name in ("..%2Ffunction_app.py", "index.html", "vendor%2Fmsal-browser.min.js"):
        answer = http("GET", fleet.service.url(f"/api/console/{name}"))
        assert answer.status == 404, name
