"""`GET /api/health` of the product's own app, through the development host."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from devhost.azurite import ACCOUNT, ACCOUNT_KEY, Azurite, free_port
from tests.support.devhost import DevHostProcess
from tests.support.settings import product_env


def get_health(host: DevHostProcess) -> tuple[int, str, dict[str, Any]]:
    try:
        with urllib.request.urlopen(host.url("/api/health"), timeout=60) as response:
            return response.status, response.headers["Content-Type"], json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], json.load(error)


def test_healthy_with_storage_reachable_and_settings_valid(azurite: Azurite) -> None:
    with DevHostProcess(product_env(azurite.connection_string)) as host:
        status, content_type, body = get_health(host)
    assert status == 200
    assert content_type.startswith("application/json")
    assert body["status"] == "healthy"
    assert body["storage"] == {"reachable": True}
    assert body["settings"] == {"valid": True, "error": None}


def test_storage_down_is_503_problem(azurite: Azurite) -> None:
    closed = free_port()  # nothing listens here
    unreachable = (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint=http://127.0.0.1:{closed}/{ACCOUNT};"
        f"TableEndpoint=http://127.0.0.1:{closed}/{ACCOUNT};"
    )
    with DevHostProcess(product_env(unreachable)) as host:
        status, content_type, body = get_health(host)
        log = host.output()
    assert status == 503
    assert content_type.startswith("application/problem+json")
    assert body["status"] == 503
    assert "storage is not reachable" in body["detail"]
    assert body["storage"] == {"reachable": False}
    assert ACCOUNT_KEY not in json.dumps(body)
    assert ACCOUNT_KEY not in log


def test_invalid_setting_is_503_naming_it(azurite: Azurite) -> None:
    env = product_env(azurite.connection_string, SMS_SITE_CODE="SMS")
    with DevHostProcess(env) as host:
        status, content_type, body = get_health(host)
    assert status == 503
    assert content_type.startswith("application/problem+json")
    assert body["settings"]["valid"] is False
    assert "SMS_SITE_CODE" in body["settings"]["error"]
    assert body["storage"] == {"reachable": True}
