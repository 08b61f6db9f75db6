"""The development host, proven on tests/devhost_app through a real `python -m devhost` and Azurite.

Every queue and table name comes from app settings, so each test has its own on the session's
Azurite; a module-wide host serves the tests that only call it.
"""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from email.message import Message
from pathlib import Path
from typing import Any, TypeVar

import pytest
from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.data.tables import TableClient
from azure.storage.queue import QueueClient

from devhost.azurite import Azurite
from tests.support.devhost import REPO_ROOT, DevHostProcess
from tests.support.devhost_app import APP, app_env

T = TypeVar("T")


def wait_for(probe: Callable[[], T | None], timeout: float = 15.0, what: str = "") -> T:
    """Poll `probe` until it returns something truthy; bounded by `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")
        time.sleep(0.1)  # polling storage for the host's effect; bounded by the deadline


def call(
    url: str,
    *,
    method: str = "GET",
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, Message, bytes]:
    request = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def rows(azurite: Azurite, env: dict[str, str], kind: str) -> list[dict[str, Any]]:
    table = TableClient.from_connection_string(azurite.connection_string, env["RECORD_TABLE"])
    try:
        return [dict(e) for e in table.query_entities("PartitionKey eq @k", parameters={"k": kind})]
    except ResourceNotFoundError:
        return []


def queue(azurite: Azurite, name: str) -> QueueClient:
    """A plain client: messages are read and written as the raw wire text."""
    return QueueClient.from_connection_string(azurite.connection_string, name)


def raw_messages(azurite: Azurite, name: str) -> list[str]:
    try:
        return [m.content for m in queue(azurite, name).peek_messages(max_messages=32)]
    except ResourceNotFoundError:
        return []


def send_base64(azurite: Azurite, name: str, text: str) -> None:
    client = queue(azurite, name)
    with contextlib.suppress(ResourceExistsError):  # the host may have created it
        client.create_queue()
    client.send_message(base64.b64encode(text.encode()).decode())


@pytest.fixture(scope="module")
def host_env(azurite: Azurite) -> dict[str, str]:
    return app_env(azurite)


@pytest.fixture(scope="module")
def host(host_env: dict[str, str]) -> Iterator[DevHostProcess]:
    with DevHostProcess(host_env, script_root=APP) as process:
        yield process


# HTTP


def test_http_route_gets_method_route_params_query_headers_and_body(host: DevHostProcess) -> None:
    status, headers, body = call(
        host.url("/api/echo/alice/more?x=1&y=two"),
        method="POST",
        body=b'{"hello": "world"}',
        headers={"Content-Type": "application/json", "X-Custom": "abc"},
    )
    assert status == 201
    assert headers["X-Echo"] == "1"
    assert headers["Content-Type"].startswith("application/json")
    echoed = json.loads(body)
    assert echoed["method"] == "POST"
    assert echoed["routeParams"] == {"name": "alice", "tail": "more"}
    assert echoed["query"] == {"x": "1", "y": "two"}
    assert echoed["headers"]["x-custom"] == "abc"
    assert echoed["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert echoed["body"] == '{"hello": "world"}'
    assert echoed["url"] == host.url("/api/echo/alice/more?x=1&y=two")


def test_optional_route_parameter_may_be_left_out(host: DevHostProcess) -> None:
    status, _, body = call(host.url("/api/echo/bob"))
    assert status == 201
    assert json.loads(body)["routeParams"] == {"name": "bob"}


def test_forwarded_for_keeps_what_the_client_sent_and_appends_the_peer(
    host: DevHostProcess,
) -> None:
    _, _, body = call(host.url("/api/echo/x"), headers={"X-Forwarded-For": "203.0.113.9"})
    assert json.loads(body)["headers"]["x-forwarded-for"] == "203.0.113.9, 127.0.0.1"


def assert_problem(status: int, headers: Message, body: bytes, expected: int) -> dict[str, Any]:
    """An RFC 9457 answer of the expected status; returns its members."""
    assert status == expected, body[:300]
    assert headers["Content-Type"].startswith("application/problem+json")
    document = json.loads(body)
    assert document["status"] == expected
    assert document["title"]
    assert document["detail"]
    assert document["type"] == "about:blank"
    return dict(document)


def raw_request(host: DevHostProcess, request: bytes) -> tuple[int, Message, bytes]:
    """Send bytes no HTTP client would (a broken request line, a header aiohttp cannot parse)."""
    with socket.create_connection(("127.0.0.1", host.port), timeout=10) as sock:
        sock.sendall(request)
        return read_answer(sock)


def read_answer(sock: socket.socket) -> tuple[int, Message, bytes]:
    """One HTTP/1.1 answer (status, headers, Content-Length body) without waiting for the close."""
    stream = sock.makefile("rb")
    status_line = stream.readline().decode("latin-1")
    headers = Message()
    while (line := stream.readline().decode("latin-1").strip()) != "":
        name, _, value = line.partition(":")
        headers[name] = value.strip()
    body = stream.read(int(headers.get("Content-Length", "0")))
    return int(status_line.split()[1]), headers, body


def test_unknown_route_is_404_and_other_method_is_405(host: DevHostProcess) -> None:
    assert_problem(*call(host.url("/api/nothing-here")), 404)
    assert_problem(*call(host.url("/elsewhere")), 404)
    status, headers, body = call(host.url("/api/echo/alice"), method="DELETE")
    assert_problem(status, headers, body, 405)
    assert headers["Allow"] == "GET, POST"


def test_function_exception_is_a_500_problem_that_says_nothing_of_it(
    host: DevHostProcess,
) -> None:
    status, headers, body = call(host.url("/api/crash"))
    assert_problem(status, headers, body, 500)
    assert b"boom" not in body
    assert "RuntimeError: boom" in host.output()  # logged for the developer, not sent


def test_oversized_header_block_gets_431(host: DevHostProcess) -> None:
    secret = "Bearer " + "secret" * 17_000  # 100 KB, inside aiohttp's field limit
    status, headers, body = call(host.url("/api/echo/a"), headers={"Authorization": secret})
    assert_problem(status, headers, body, 431)
    assert call(host.url("/api/echo/a"))[0] == 201  # the host is still serving


@pytest.mark.parametrize(
    ("request_bytes", "expected"),
    [
        pytest.param(b"G@T /api/echo/a HTTP/1.1\r\nHost: h\r\n\r\n", 400, id="bad-method"),
        pytest.param(b"GET /api/echo/a HTTP/9.9\r\nHost: h\r\n\r\n", 400, id="bad-version"),
        pytest.param(b"GET /api/\xff HTTP/1.1\r\nHost: h\r\n\r\n", 400, id="non-utf8-path"),
        pytest.param(
            b"GET /api/echo/a HTTP/1.1\r\nHost: h\r\nBad Header: secret\r\n\r\n",
            400,
            id="header-name",
        ),
        pytest.param(
            b"GET /api/echo/a HTTP/1.1\r\nHost: h\r\nX-A: secret\x01\r\n\r\n",
            400,
            id="control-character",
        ),
        pytest.param(
            b"POST /api/echo/a HTTP/1.1\r\nHost: h\r\nContent-Length: secret\r\n\r\n",
            400,
            id="content-length",
        ),
        pytest.param(
            b"POST /api/echo/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nsecret\r\n",
            400,
            id="chunk-size",
        ),
        pytest.param(
            b"GET /api/echo/a?" + b"secret" * 2000 + b" HTTP/1.1\r\nHost: h\r\n\r\n",
            414,
            id="request-line",
        ),
        pytest.param(
            b"GET /api/echo/a HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer "
            + b"secret" * 30_000
            + b"\r\n\r\n",
            431,
            id="header-over-the-parser-limit",
        ),
        pytest.param(
            b"GET /api/echo/a HTTP/1.1\r\nHost: h\r\n"
            + b"".join(b"X-%d: secret\r\n" % n for n in range(101))
            + b"\r\n",
            431,
            id="101-fields",
        ),
        pytest.param(
            b"GET /api/echo/a HTTP/1.1\r\nHost: h\r\nX-A: secret\xc3\xa9\r\n\r\n",
            400,
            id="non-ascii-value",
        ),
        pytest.param(
            b"GET /api/echo/a HTTP/1.1\r\nHost: 127.0.0.1:99999999\r\n\r\n", 400, id="host-port"
        ),
        pytest.param(
            b"POST /api/echo/a HTTP/1.1\r\nHost: h\r\nContent-Length: 999999999999\r\n\r\n",
            413,
            id="declared-body-size",
        ),
    ],
)
def test_requests_the_host_refuses_get_a_problem_that_echoes_nothing(
    host: DevHostProcess, request_bytes: bytes, expected: int
) -> None:
    status, headers, body = raw_request(host, request_bytes)
    assert_problem(status, headers, body, expected)
    assert b"secret" not in body
    assert "secret" not in host.output()  # nor in the log
    assert call(host.url("/api/echo/a"))[0] == 201


def test_a_body_over_the_limit_while_reading_is_413(host: DevHostProcess) -> None:
    """Chunked, so no Content-Length announces it: the host stops reading at 100 MB."""
    chunk = b"x" * (1024 * 1024)
    head = b"POST /api/echo/a HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    framed = b"%x\r\n" % len(chunk) + chunk + b"\r\n"
    with socket.create_connection(("127.0.0.1", host.port), timeout=30) as sock:
        sock.sendall(head)
        with contextlib.suppress(OSError):  # the host may close while we still send
            for _ in range(101):
                sock.sendall(framed)
        assert_problem(*read_answer(sock), 413)


def test_content_encoding_is_passed_through_undecoded(host: DevHostProcess) -> None:
    """As Kestrel: the function sees the bytes and the header, and decides."""
    status, _, body = call(
        host.url("/api/echo/a"),
        method="POST",
        body=b"plain, not gzip",
        headers={"Content-Encoding": "gzip"},
    )
    assert status == 201
    echoed = json.loads(body)
    assert echoed["body"] == "plain, not gzip"
    assert echoed["headers"]["content-encoding"] == "gzip"


def test_startup_listing_names_every_function_and_its_url(host: DevHostProcess) -> None:
    output = host.output()
    assert f"echo: [GET,POST] {host.base_url}/api/echo/{{name}}/{{tail?}}" in output
    assert (
        f"grid: eventGridTrigger {host.base_url}/runtime/webhooks/eventgrid?functionName=grid"
        in output
    )
    assert "tick: timerTrigger (0 0 0 1 1 *)" in output
    assert "relay: queueTrigger (relay-in-" in output
    assert "AccountKey" not in output


# Timers and the admin endpoint


def test_admin_endpoint_runs_a_timer_now_not_past_due(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    status, _, _ = call(host.url("/admin/functions/tick"), method="POST", body=b'{"input": ""}')
    assert status == 202
    ticks = wait_for(lambda: rows(azurite, host_env, "tick"), what="the tick row")
    assert [row["pastDue"] for row in ticks] == [False]


def test_admin_endpoint_errors_are_problems(host: DevHostProcess) -> None:
    assert_problem(*call(host.url("/admin/functions/nope"), method="POST", body=b"{}"), 404)
    assert_problem(*call(host.url("/admin/functions/echo"), method="POST", body=b"{}"), 400)
    assert_problem(*call(host.url("/admin/functions/tick"), method="POST", body=b"[1"), 400)
    assert_problem(*call(host.url("/admin/functions/tick")), 405)


def test_admin_endpoint_runs_a_queue_function_with_its_input(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    body = json.dumps({"input": "admin-a,admin-b"}).encode()
    assert call(host.url("/admin/functions/relay"), method="POST", body=body)[0] == 202
    out_queue = host_env["RELAY_OUT_QUEUE"]

    def relayed() -> set[str]:
        texts = {base64.b64decode(m).decode() for m in raw_messages(azurite, out_queue)}
        return {t for t in texts if t.startswith("admin-")}

    assert wait_for(lambda: len(relayed()) == 2 and relayed(), what="admin relay") == {
        "admin-a|1",
        "admin-b|1",
    }


def test_timer_fires_on_its_resolved_schedule(azurite: Azurite) -> None:
    env = app_env(azurite, TICK_SCHEDULE="* * * * * *")
    with DevHostProcess(env, script_root=APP):
        ticks = wait_for(lambda: len(rows(azurite, env, "tick")) >= 2, what="two ticks")
    assert ticks
    assert not any(row["pastDue"] for row in rows(azurite, env, "tick"))


def test_tick_that_starts_late_is_past_due(azurite: Azurite) -> None:
    env = app_env(azurite, OVERRUN_SCHEDULE="* * * * * *")
    with DevHostProcess(env, script_root=APP):
        wait_for(lambda: len(rows(azurite, env, "overrun")) >= 2, what="two overrun ticks")
    by_call = {row["call"]: row["pastDue"] for row in rows(azurite, env, "overrun")}
    assert by_call[1] is False
    assert by_call[2] is True  # started about 1.5 s after its scheduled second


# Queues


def test_queue_trigger_with_output_binding(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    send_base64(azurite, host_env["RELAY_IN_QUEUE"], "queued-a,queued-b")
    out_queue = host_env["RELAY_OUT_QUEUE"]

    def relayed() -> list[str]:
        texts = [base64.b64decode(m).decode() for m in raw_messages(azurite, out_queue)]
        return sorted(t for t in texts if t.startswith("queued-"))

    # base64 on the wire, one message per list item, the dequeue count seen by the function
    wait_for(lambda: len(relayed()) == 2, what="two output messages")
    assert relayed() == ["queued-a|1", "queued-b|1"]
    wait_for(
        lambda: raw_messages(azurite, host_env["RELAY_IN_QUEUE"]) == [] or None,
        what="the input message deleted",
    )


def test_failing_message_is_retried_then_poisoned_intact(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    name = host_env["DOOMED_QUEUE"]
    wire = base64.b64encode(b'{"doomed": true}').decode()
    client = queue(azurite, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    sent = client.send_message(wire)
    wait_for(lambda: wire in raw_messages(azurite, name + "-poison"), what="the poison copy")
    assert wire not in raw_messages(azurite, name)
    attempts = sorted(
        row["attempt"] for row in rows(azurite, host_env, "doomed") if row["messageId"] == sent.id
    )
    assert attempts == [1, 2, 3]  # maxDequeueCount 3 in tests/devhost_app/host.json


def test_message_that_is_not_base64_is_poisoned_without_a_call(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    name = host_env["DOOMED_QUEUE"]
    client = queue(azurite, name)
    with contextlib.suppress(ResourceExistsError):
        client.create_queue()
    sent = client.send_message("not base64!")
    wait_for(lambda: "not base64!" in raw_messages(azurite, name + "-poison"), what="poison")
    assert sent.id not in {row["messageId"] for row in rows(azurite, host_env, "doomed")}
    assert "queue message is not base64" in host.output()


def test_sigterm_releases_an_unfinished_message_for_another_instance(azurite: Azurite) -> None:
    env = app_env(azurite, DEVHOST_SHUTDOWN_GRACE_SECONDS="1")
    first = DevHostProcess(env, script_root=APP).start()
    try:
        send_base64(azurite, env["SLOW_QUEUE"], "slow")
        wait_for(lambda: rows(azurite, env, "slow-started"), what="the first attempt")
        started = time.monotonic()
        assert first.stop(signal.SIGTERM) == 0
        assert time.monotonic() - started < 10
        assert "released unfinished message" in first.output()
    finally:
        first.stop()
    with DevHostProcess(env, script_root=APP):
        done = wait_for(lambda: rows(azurite, env, "slow-done"), timeout=10, what="redelivery")
    assert [row["attempt"] for row in done] == [2]


# Event Grid


def grid_url(host: DevHostProcess, function: str = "grid") -> str:
    return host.url(f"/runtime/webhooks/eventgrid?functionName={function}")


def test_event_grid_subscription_validation_is_answered_without_a_call(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    event = [
        {
            "id": str(uuid.uuid4()),
            "topic": "t",
            "subject": "",
            "eventTime": "2026-01-01T00:00:00Z",
            "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
            "dataVersion": "1",
            "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"},
        }
    ]
    status, _, body = call(
        grid_url(host),
        method="POST",
        body=json.dumps(event).encode(),
        headers={"aeg-event-type": "SubscriptionValidation", "Content-Type": "application/json"},
    )
    assert status == 200
    assert json.loads(body) == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}
    assert rows(azurite, host_env, "grid") == []


def test_event_grid_notification_calls_the_function_once_per_event(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    ids = [str(uuid.uuid4()), str(uuid.uuid4())]
    events = [
        {
            "id": event_id,
            "topic": "/subscriptions/x",
            "subject": f"users/{n}",
            "eventType": "Microsoft.Graph.UserUpdated",
            "eventTime": "2026-01-01T00:00:00Z",
            "dataVersion": "1",
            "data": {"n": n},
        }
        for n, event_id in enumerate(ids)
    ]
    status, _, _ = call(
        grid_url(host),
        method="POST",
        body=json.dumps(events).encode(),
        headers={"aeg-event-type": "Notification"},
    )
    assert status == 202
    recorded = rows(azurite, host_env, "grid")
    assert sorted(r["eventId"] for r in recorded) == sorted(ids)
    assert {r["subject"] for r in recorded} == {"users/0", "users/1"}
    assert {json.loads(r["data"])["n"] for r in recorded} == {0, 1}


def test_event_grid_cloud_event(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    event_id = str(uuid.uuid4())
    cloud_event = {
        "specversion": "1.0",
        "id": event_id,
        "source": "/graph",
        "type": "user.updated",
        "subject": "users/9",
        "time": "2026-01-01T00:00:00Z",
        "data": {"n": 9},
    }
    status, _, _ = call(
        grid_url(host),
        method="POST",
        body=json.dumps(cloud_event).encode(),
        headers={"aeg-event-type": "Notification", "Content-Type": "application/cloudevents+json"},
    )
    assert status == 202
    assert event_id in {r["eventId"] for r in rows(azurite, host_env, "grid")}


NOTIFICATION = {"aeg-event-type": "Notification"}


def grid_event(**overrides: object) -> dict[str, object]:
    event: dict[str, object] = {
        "id": str(uuid.uuid4()),
        "topic": "/subscriptions/x",
        "subject": "users/1",
        "eventType": "Microsoft.Graph.UserUpdated",
        "eventTime": "2026-01-01T00:00:00Z",
        "dataVersion": "1",
        "data": {"n": 1},
    }
    event.update(overrides)
    return event


def test_event_grid_errors(host: DevHostProcess) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for function, body, headers, expected in [
        ("nope", b"[]", NOTIFICATION, 404),
        ("grid", b"{oops", NOTIFICATION, 400),
        ("grid", b"\xff\xfe", NOTIFICATION, 400),
        ("grid", deep, NOTIFICATION, 400),
        ("grid", b"42", NOTIFICATION, 400),
        ("grid", b'"event"', NOTIFICATION, 400),
        ("grid", b"[]", {}, 400),  # no aeg-event-type
        ("grid", b"[]", {"aeg-event-type": "SubscriptionValidation"}, 400),
    ]:
        answer = call(grid_url(host, function), method="POST", body=body, headers=headers)
        assert_problem(*answer, expected)
    assert_problem(*call(grid_url(host)), 405)


def test_unreadable_events_are_acknowledged_and_the_good_ones_run(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    good = grid_event()
    batch = [
        grid_event(eventTime=12),  # azure.functions' converter cannot read these
        grid_event(eventTime="yesterday"),
        grid_event(eventTime=["2026-01-01T00:00:00Z"]),
        "not an event",
        7,
        good,
    ]
    status, _, _ = call(
        grid_url(host), method="POST", body=json.dumps(batch).encode(), headers=NOTIFICATION
    )
    assert status == 202  # nothing for Event Grid to redeliver
    recorded = {r["eventId"] for r in rows(azurite, host_env, "grid")}
    assert good["id"] in recorded
    assert not {str(e["id"]) for e in batch[:3] if isinstance(e, dict)} & recorded
    assert host.output().count("cannot be decoded: acknowledged, not run") >= 3


def test_a_failing_event_fails_the_delivery_after_the_others_ran(
    host: DevHostProcess, host_env: dict[str, str], azurite: Azurite
) -> None:
    before, after = grid_event(), grid_event()
    batch = [before, grid_event(data={"fail": True}), after]
    answer = call(
        grid_url(host), method="POST", body=json.dumps(batch).encode(), headers=NOTIFICATION
    )
    assert_problem(*answer, 500)  # Event Grid redelivers: the function did not acknowledge
    recorded = {r["eventId"] for r in rows(azurite, host_env, "grid")}
    assert {before["id"], after["id"]} <= recorded


# Start-up errors


def run_devhost(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "devhost", "--port", "1", *args],
        cwd=REPO_ROOT,
        env={"PATH": "/usr/bin:/bin", "DEVHOST_NO_LOCAL_SETTINGS": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_missing_schedule_setting_fails_with_one_line(azurite: Azurite) -> None:
    env = app_env(azurite)
    del env["TICK_SCHEDULE"]
    result = run_devhost(env, "--script-root", str(APP))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        "devhost: function 'tick' binding 'timer' schedule: app setting 'TICK_SCHEDULE' is not set"
    ]


def test_missing_storage_connection_fails_with_one_line(azurite: Azurite) -> None:
    env = app_env(azurite)
    del env["AzureWebJobsStorage"]
    result = run_devhost(env, "--script-root", str(APP))
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("devhost: AzureWebJobsStorage is required")


def test_bad_schedule_fails_with_one_line(azurite: Azurite) -> None:
    result = run_devhost(app_env(azurite, TICK_SCHEDULE="*/5 * * * *"), "--script-root", str(APP))
    assert result.returncode != 0
    [line] = result.stderr.strip().splitlines()
    assert "function 'tick'" in line
    assert "six-field NCRONTAB" in line


def test_local_settings_fill_in_without_overriding_the_environment(
    azurite: Azurite, tmp_path: Path
) -> None:
    for name in ("function_app.py", "host.json"):
        (tmp_path / name).write_text((APP / name).read_text())
    env = app_env(azurite)
    from_file = app_env(azurite)
    (tmp_path / "local.settings.json").write_text(
        json.dumps(
            {
                "IsEncrypted": False,
                "Values": {
                    "RECORD_TABLE": from_file["RECORD_TABLE"],
                    "TICK_SCHEDULE": "* * * * * *",
                },
            }
        )
    )
    del env["RECORD_TABLE"]
    env["DEVHOST_NO_LOCAL_SETTINGS"] = "0"
    with DevHostProcess(env, script_root=tmp_path) as process:
        assert call(process.url("/admin/functions/tick"), method="POST", body=b"{}")[0] == 202
        wait_for(lambda: rows(azurite, from_file, "tick"), what="a row in the file's table")
        assert "Loaded 1 settings from local.settings.json" in process.output()
    # The environment's TICK_SCHEDULE (never) won over the file's (every second): one tick only.
    assert len(rows(azurite, from_file, "tick")) == 1
