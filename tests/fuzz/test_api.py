"""Hostile clients against every HTTP endpoint and the Event Grid webhook of ONE host.

Each test generates requests (hypothesis) for one endpoint: its methods and others, its query
parameters with hostile values, headers (tokens valid, broken, huge, missing; encodings; a `Host`
no server can use), bodies of every encoding and size, Unicode including lone surrogates. Every
answer must pass `assert_honest` (tests/fuzz/wire.py): no 5xx, problem+json on every error,
neither the token nor the canary echoed, within a bound. A report answered 202 must then appear in
`DeviceStatusHistory`: a 202 means recorded. Scale with FUZZ_SCALE (tests/support/fuzz.py).
"""

from __future__ import annotations

import gzip
import json
import time
import uuid
from typing import Any, Final
from urllib.parse import quote

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import TableClient
from hypothesis import given
from hypothesis import strategies as st

from shared.names import DEVICE_STATUS_HISTORY
from tests.fuzz.conftest import Target
from tests.fuzz.wire import Request
from tests.support.fuzz import fuzz_settings
from tests.support.settings import TENANT_ID

RECORDED_WITHIN_SECONDS: Final = 60.0
METHODS = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE"])
PRINTABLE = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=30)
# Unicode of every plane, lone surrogates included (they reach us as \uD800 or %ED%A0%80).
UNICODE = st.text(
    st.one_of(
        st.characters(),
        st.characters(min_codepoint=0x10000),
        st.characters(categories=["Cs"]),
    ),
    max_size=30,
)
HOSTILE_TEXT = st.one_of(
    PRINTABLE,
    UNICODE,
    st.sampled_from(["", " ", "null", "-1", "0", "99999999999999999999", "../..", "%00", "\x00"]),
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=2000, max_size=9000),
)


def mostly(usual: Any, other: Any, *, out_of: int = 4) -> Any:
    """`usual` in (out_of - 1) draws of `out_of`, else `other` (one_of would weigh them alike)."""
    return st.sampled_from(range(out_of)).flatmap(lambda n: other if n == out_of - 1 else usual)


def encoded(text: str) -> str:
    """Percent-encoded UTF-8 (a lone surrogate becomes bytes no UTF-8 decoder accepts)."""
    return quote(text.encode("utf-8", "surrogatepass"), safe="")


def query(params: dict[str, str]) -> str:
    return "&".join(f"{encoded(name)}={encoded(value)}" for name, value in params.items())


def params_of(names: list[str], valid: dict[str, st.SearchStrategy[str]]) -> Any:
    """Each parameter: valid, hostile or left out; sometimes an unknown one too."""
    chosen = {
        name: mostly(valid[name], st.one_of(HOSTILE_TEXT, st.none()), out_of=5)
        if name in valid
        else st.one_of(HOSTILE_TEXT, st.none())
        for name in names
    }
    extra = st.dictionaries(PRINTABLE.filter(bool), HOSTILE_TEXT, max_size=2)
    return st.builds(
        lambda known, unknown: {**unknown, **{k: v for k, v in known.items() if v is not None}},
        st.fixed_dictionaries(chosen),
        extra,
    )


def headers(target: Target, token: str) -> Any:
    """Authorization (valid, broken, huge or missing), encodings, a `Host`, odd extra fields."""
    valid = f"Bearer {token}"
    authorization = st.one_of(
        st.just(valid),
        st.just(valid[:-7]),  # signature cut: cannot verify
        st.just(valid.replace(".", "..", 1)),
        st.just("Bearer " + target.canary),
        st.just("Basic " + target.canary),
        st.just("Bearer"),
        st.just(valid + " " + "x" * 40_000),  # a header block too large
        st.none(),
    )
    fields = st.fixed_dictionaries(
        {
            b"Authorization": authorization,
            b"Content-Type": st.one_of(
                st.none(),
                st.sampled_from(
                    [
                        "application/json",
                        "text/plain",
                        "application/json; charset=utf-16",
                        "multipart/form-data; boundary=x",
                        "application/x-www-form-urlencoded",
                    ]
                ),
                PRINTABLE,
            ),
            b"Content-Encoding": st.one_of(
                st.none(), st.none(), st.sampled_from(["gzip", "br", "identity", "x-unknown"])
            ),
            b"Host": st.one_of(
                st.none(),
                st.none(),
                st.sampled_from(["127.0.0.1:99999999", "127.0.0.1:-1", "", "[::1", "a b", "h:x"]),
            ),
            b"X-Forwarded-For": st.one_of(st.none(), PRINTABLE),
            b"X-Canary": st.just(target.canary),
        }
    )
    odd = st.lists(
        st.tuples(
            st.from_regex(rb"[A-Za-z][A-Za-z0-9-]{0,20}", fullmatch=True),
            st.one_of(
                st.binary(max_size=40).map(lambda b: bytes(c for c in b if c not in b"\r\n")),
                PRINTABLE.map(str.encode),
            ),
        ),
        max_size=3,
    )
    hostile = st.builds(
        lambda known, extra: (
            [
                (name, value.encode("utf-8", "surrogatepass"))
                for name, value in known.items()
                if value is not None
            ]
            + extra
        ),
        fields,
        odd,
    )
    plain = [
        (b"Authorization", valid.encode()),
        (b"Content-Type", b"application/json"),
        (b"X-Canary", target.canary.encode()),
    ]
    # Mostly well-formed, so that most requests get past the transport to the endpoint's checks.
    return mostly(st.just(plain), hostile, out_of=3)


def bodies(valid: st.SearchStrategy[bytes]) -> Any:
    """A valid body, or one in another encoding, compressed, truncated, huge or plain garbage."""
    return mostly(
        valid,
        st.one_of(
            valid.map(lambda b: b.decode().encode("utf-16")),
            valid.map(lambda b: b"\xef\xbb\xbf" + b),  # a UTF-8 byte order mark
            valid.map(gzip.compress),
            valid.map(lambda b: b[: len(b) // 2]),
            st.binary(max_size=200),
            st.builds(lambda n: b"[" * n + b"]" * n, st.integers(1, 100_000)),
            st.builds(lambda n: b'{"a":"' + b"x" * n + b'"}', st.integers(60_000, 200_000)),
            st.just(b""),
        ),
        out_of=3,
    )


def guid() -> Any:
    return st.builds(lambda: str(uuid.uuid4()))


# -- the endpoints --------------------------------------------------------------------------


@fuzz_settings(20)
@given(data=st.data())
def test_bundle(target: Target, data: st.DataObject) -> None:
    nonce = st.from_regex(r"[A-Za-z0-9_-]{8,128}", fullmatch=True)
    params = data.draw(params_of(["deviceId", "nonce"], {"deviceId": guid(), "nonce": nonce}))
    method = data.draw(mostly(st.just("GET"), METHODS))
    answer = target.send(
        Request(
            method,
            "/api/bundle?" + query(params),
            data.draw(headers(target, target.device_token)),
            data.draw(st.one_of(st.just(b""), st.binary(max_size=100))),
        )
    )
    if answer.status == 200 and method == "GET":
        assert answer.headers["Content-Type"].startswith("application/jose")
        assert answer.body.count(b".") == 2


def report_body(canary: str) -> Any:
    """A report that is valid unless hypothesis makes it otherwise (values, types, extra fields)."""
    valid = st.fixed_dictionaries(
        {
            "reportId": guid(),
            "deviceId": guid(),
            "tenantId": st.just(TENANT_ID),
            "hostname": st.from_regex(r"PC[0-9]{1,6}(\.contoso\.com)?", fullmatch=True),
            "stage": st.sampled_from(["bundle-received", "installing", "installed", "failed"]),
            "azureAdJoined": st.booleans(),
            "domainJoined": st.booleans(),
            "ccmsetupExitCode": st.one_of(st.none(), st.integers(-(2**31), 2**32 - 1)),
            "clientVersion": st.sampled_from(["5.00.9128.1000", None]),
            "siteCode": st.sampled_from(["ABC", None]),
            "reportedAt": st.sampled_from(
                ["2026-01-01T00:00:00Z", "2025-06-30T23:59:59.999999+14:00", "1601-01-01T00:00Z"]
            ),
        },
        optional={
            "dsregcmd": st.dictionaries(UNICODE, UNICODE, max_size=6),
        },
    )
    hostile_values = st.one_of(
        HOSTILE_TEXT,
        st.just(canary),
        st.integers(),
        st.floats(),
        st.lists(st.integers(), max_size=3),
        st.dictionaries(UNICODE, UNICODE, max_size=3),
        st.sampled_from(
            ["0999-12-31T23:59:59Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
        ),
    )
    mutations = st.dictionaries(
        st.sampled_from(
            [
                "hostname",
                "stage",
                "azureAdJoined",
                "ccmsetupExitCode",
                "clientVersion",
                "siteCode",
                "reportedAt",
                "dsregcmd",
                "tenantId",
                "deviceId",
                "stgae",
            ]
        ),
        hostile_values,
        max_size=2,
    )
    return st.builds(lambda v, m: {**v, **m}, valid, st.one_of(st.just({}), mutations))


@fuzz_settings(30)
@given(data=st.data())
def test_reports_and_every_202_is_recorded(target: Target, data: st.DataObject) -> None:
    """Each 202 is noted; the next test looks them all up in the history."""
    report = data.draw(report_body(target.canary))
    wire_body = data.draw(bodies(st.just(json.dumps(report).encode())), label="body")
    method = data.draw(mostly(st.just("POST"), METHODS))
    answer = target.send(
        Request(method, "/api/reports", data.draw(headers(target, target.device_token)), wire_body)
    )
    if answer.status == 202:
        sent = answer.json()
        assert isinstance(sent, dict)
        target.accepted_reports.append((str(report["deviceId"]).lower(), sent["reportId"]))


def test_every_report_answered_202_is_in_the_history(target: Target) -> None:
    """After the fuzzing above: the host's record_status ran for each 202 (bounded wait)."""
    pending = set(target.accepted_reports)
    assert pending, "the fuzzing above got no report through: it would prove nothing"
    table = TableClient.from_connection_string(
        target.azurite.connection_string, DEVICE_STATUS_HISTORY
    )
    deadline = time.monotonic() + RECORDED_WITHIN_SECONDS
    while pending and time.monotonic() < deadline:
        for device_id, report_id in sorted(pending):
            if recorded(table, device_id, report_id):
                pending.discard((device_id, report_id))
        time.sleep(0.2)  # polling storage for the host's queue trigger; bounded by the deadline
    assert not pending, f"answered 202 but never recorded: {sorted(pending)[:5]}"
    print(f"\nfuzz: {len(target.accepted_reports)} reports answered 202, all recorded")


def recorded(table: TableClient, device_id: str, report_id: str) -> bool:
    query = "PartitionKey eq @d and reportId eq @r"
    try:
        rows = table.query_entities(query, parameters={"d": device_id, "r": report_id})
        return any(True for _ in rows)
    except ResourceNotFoundError:  # the recorder has not created the table yet
        return False


@fuzz_settings(20)
@given(data=st.data())
def test_admin_views(target: Target, data: st.DataObject) -> None:
    page_size = st.integers(-5, 2000).map(str)
    paths = st.one_of(
        st.builds(
            lambda q: "/api/devices?" + query(q),
            params_of(
                ["state", "pageSize", "continuation", "summary"],
                {
                    "state": st.sampled_from(["installed", "failed", "x"]),
                    "pageSize": page_size,
                    "summary": st.just("stage"),
                },
            ),
        ),
        st.builds(lambda d: "/api/devices/" + encoded(d), st.one_of(guid(), HOSTILE_TEXT)),
        st.builds(
            lambda q: "/api/discovery/runs?" + query(q),
            params_of(["pageSize", "continuation"], {"pageSize": page_size}),
        ),
    )
    token = data.draw(mostly(st.just(target.admin_token), st.just(target.device_token)))
    target.send(
        Request(
            data.draw(mostly(st.just("GET"), METHODS)),
            data.draw(paths),
            data.draw(headers(target, token)),
        )
    )


@fuzz_settings(10)
@given(data=st.data())
def test_public_endpoints(target: Target, data: st.DataObject) -> None:
    path = data.draw(st.sampled_from(["/api/jwks", "/api/jwks/signed", "/api/health"]))
    extra = data.draw(params_of([], {}))
    answer = target.send(
        Request(
            data.draw(mostly(st.just("GET"), METHODS)),
            path + ("?" + query(extra) if extra else ""),
            data.draw(headers(target, data.draw(st.sampled_from(["", target.admin_token])))),
            data.draw(st.one_of(st.just(b""), st.binary(max_size=64))),
        )
    )
    if answer.status == 200 and path == "/api/jwks":
        keys = answer.json()
        assert isinstance(keys, dict)
        assert all("d" not in key for key in keys["keys"])  # public keys only


def events(canary: str) -> Any:
    """Event Grid and CloudEvents with every envelope field valid or of the wrong JSON type."""
    any_json = st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | UNICODE | st.just(canary),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(UNICODE, inner, max_size=3),
        max_leaves=6,
    )
    times = st.one_of(
        st.just("2026-01-01T00:00:00Z"), st.just("2026-01-01T00:00:00+02:00"), any_json
    )
    types = st.one_of(
        st.sampled_from(
            ["CMBootstrap.DiscoveryRequested", "Microsoft.Graph.UserUpdated", "Other.Type"]
        ),
        any_json,
    )
    data = st.one_of(
        st.sampled_from([{"mode": "delta"}, {"mode": "sideways"}, '{"mode": "delta"}']),
        st.builds(lambda n: "[" * n + "]" * n, st.integers(1, 5000)),
        any_json,
    )
    grid = st.fixed_dictionaries(
        {
            "id": st.one_of(guid(), any_json),
            "eventType": types,
            "subject": any_json,
            "eventTime": times,
            "dataVersion": st.just("1"),
            "data": data,
        }
    )
    cloud = st.fixed_dictionaries(
        {
            "specversion": st.just("1.0"),
            "id": guid(),
            "source": any_json,
            "type": types,
            "time": times,
            "data": data,
        }
    )
    return st.one_of(grid, cloud, any_json)


@fuzz_settings(20)
@given(data=st.data())
def test_event_grid_webhook(target: Target, data: st.DataObject) -> None:
    batch = data.draw(st.one_of(st.lists(events(target.canary), max_size=4), events(target.canary)))
    valid = json.dumps(batch).encode()
    kind = data.draw(
        mostly(
            st.just("Notification"), st.sampled_from(["SubscriptionValidation", "Unsubscribe", ""])
        )
    )
    function = data.draw(st.sampled_from(["discovery_events"] * 8 + ["nope", "reports", ""]))
    target.send(
        Request(
            data.draw(mostly(st.just("POST"), METHODS)),
            "/runtime/webhooks/eventgrid?functionName=" + encoded(function),
            [(b"aeg-event-type", kind.encode()), (b"X-Canary", target.canary.encode())],
            data.draw(bodies(st.just(valid))),
        )
    )


@fuzz_settings(20)
@given(data=st.data())
def test_any_request_line(target: Target, data: st.DataObject) -> None:
    """Methods, paths and request lines no client should send, to any route or none."""
    path = data.draw(
        st.one_of(
            st.sampled_from(
                [
                    "/api/bundle",
                    "/api/reports",
                    "/api/devices/x/y",
                    "/api/",
                    "/",
                    "/admin/functions/x",
                    "/admin/host/status",
                    "/runtime/webhooks/eventgrid",
                    "/API/JWKS",
                    "//api//jwks",
                ]
            ),
            st.builds(lambda t: "/api/" + encoded(t), HOSTILE_TEXT),
            st.builds(lambda t: "/" + t, PRINTABLE),
        )
    )
    method = data.draw(st.one_of(METHODS, PRINTABLE.filter(bool)))
    target.send(Request(method, path, data.draw(headers(target, target.device_token))))
