"""Telemetry plumbing: secrets never reach a log line; no exporter without a connection string."""

from __future__ import annotations

import io
import json
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.telemetry import REDACTED, entra_client_id, install_redaction, redact

ROOT = Path(__file__).resolve().parent.parent
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


class StructuredFormatter(logging.Formatter):
    """Message, traceback and every `extra=` attribute: what a structured exporter ships."""

    def format(self, record: logging.LogRecord) -> str:
        extras = {k: v for k, v in vars(record).items() if k not in _STANDARD}
        return f"{super().format(record)} {json.dumps(extras, default=str)}"


@pytest.fixture(scope="module")
def private_key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture(scope="module")
def access_token(private_key_pem: str) -> str:
    """A real RS256 JWS, shaped like an Entra access token."""
    claims = {"aud": "api://contoso", "tid": str(uuid.uuid4()), "oid": str(uuid.uuid4())}
    return jwt.encode(claims, private_key_pem, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    """A logger in the app's namespace whose handler formats like a host would, redaction on."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(StructuredFormatter("%(levelname)s %(message)s"))
    logger = logging.getLogger(f"shared.test_telemetry.{uuid.uuid4().hex}")
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    logger.addHandler(handler)
    install_redaction(logger)
    yield logger, stream
    logger.removeHandler(handler)


def test_bearer_token_in_message_args_and_extra_is_redacted(captured, access_token):
    logger, stream = captured
    device_id = str(uuid.uuid4())
    logger.warning(
        "rejected token for %s: header was %s",
        device_id,
        f"Bearer {access_token}",
        extra={"deviceId": device_id, "authorization": f"Bearer {access_token}"},
    )
    output = stream.getvalue()
    assert access_token not in output
    assert access_token.split(".")[1] not in output  # not even the claims segment
    assert f"Bearer {REDACTED}" in output
    assert device_id in output  # identifiers stay: they are what operators search for


def test_bare_jws_such_as_a_bundle_is_redacted(captured, access_token):
    logger, stream = captured
    logger.info("issued bundle %s", access_token, extra={"jti": "a1b2"})
    output = stream.getvalue()
    assert access_token not in output
    assert "issued bundle [REDACTED]" in output
    assert "a1b2" in output


def test_storage_connection_string_and_sas_keep_names_but_lose_keys(captured):
    logger, stream = captured
    account_key = "Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFy=="
    logger.error(
        "storage unreachable: DefaultEndpointsProtocol=https;AccountName=stcmboot;"
        "AccountKey=%s;EndpointSuffix=core.windows.net",
        account_key,
        extra={"url": "https://stcmboot.queue.core.windows.net/q?sv=2022-11-02&sig=abc%2Fdef%3D"},
    )
    output = stream.getvalue()
    assert account_key not in output
    assert "abc%2Fdef" not in output
    assert "AccountName=stcmboot" in output
    assert f"AccountKey={REDACTED}" in output
    assert f"sig={REDACTED}" in output


def test_pem_key_in_an_exception_is_redacted_and_the_traceback_kept(captured, private_key_pem):
    logger, stream = captured
    try:
        raise ValueError(f"could not load signing key:\n{private_key_pem}")
    except ValueError:
        logger.exception("signing failed", extra={"jti": "j-1"})
    output = stream.getvalue()
    body = private_key_pem.splitlines()[3]
    assert body not in output
    assert "BEGIN PRIVATE KEY" not in output
    assert "Traceback (most recent call last)" in output
    assert "ValueError: could not load signing key" in output


def test_token_fields_in_a_logged_json_body_are_redacted(captured):
    logger, stream = captured
    body = json.dumps({"access_token": "opaque-mi-token-123", "expires_on": "1700000000"})
    logger.debug("token endpoint answered %s", body)
    output = stream.getvalue()
    assert "opaque-mi-token-123" not in output
    assert "1700000000" in output


def test_ordinary_log_lines_are_left_alone():
    line = (
        "discovery progress runId=20261127T150000Z-9f1c pages=12 users=11988 rate=812/s "
        "nonce=AbCdEfGh12345678 site=ABC CCMHOSTNAME=SCCMPROXYCONTOSO.CLOUDAPP.NET/CCM_Proxy"
    )
    assert redact(line) == line


def test_entra_authentication_string_selects_the_managed_identity():
    client = str(uuid.uuid4())
    other = str(uuid.uuid4())
    auth = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
    assert entra_client_id({auth: f"Authorization=AAD;ClientId={client}"}) == client
    assert entra_client_id({auth: "Authorization=AAD", "AZURE_CLIENT_ID": other}) == other
    assert entra_client_id({auth: "", "AZURE_CLIENT_ID": other}) is None
    assert entra_client_id({}) is None


def _probe(env: dict[str, str]) -> dict[str, object]:
    """Configure telemetry in a fresh interpreter (exporters are process-global) and report."""
    script = (
        "import json, sys\n"
        "from opentelemetry import trace\n"
        "from shared.telemetry import configure_telemetry\n"
        "exporting = configure_telemetry()\n"
        "print(json.dumps({'exporting': exporting,\n"
        "  'distro_loaded': 'azure.monitor.opentelemetry' in sys.modules,\n"
        "  'tracer_provider': type(trace.get_tracer_provider()).__name__}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    result: dict[str, object] = json.loads(completed.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.parametrize("connection_string", [None, "", "   "])
def test_without_a_connection_string_nothing_is_exported(connection_string):
    env = {"APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Authorization=AAD;ClientId=x"}
    if connection_string is not None:
        env["APPLICATIONINSIGHTS_CONNECTION_STRING"] = connection_string
    result = _probe(env)
    assert result == {
        "exporting": False,
        "distro_loaded": False,
        "tracer_provider": "ProxyTracerProvider",
    }


_EXPORT_SCRIPT = """
import json, logging, sys
from opentelemetry._logs import get_logger_provider
from shared.telemetry import configure_telemetry

values = json.loads(sys.argv[1])
assert configure_telemetry() is True
assert configure_telemetry() is True  # a second call changes nothing
logging.getLogger("shared.discovery.run").info(
    "discovery progress", extra={"runId": values["runId"], "pages": 3, "users": 2997}
)
logging.getLogger("blueprints.reports").warning(
    "rejected a report: Authorization was Bearer %s", values["token"],
    extra={"deviceId": values["deviceId"], "reportId": values["reportId"]},
)
get_logger_provider().force_flush()
"""


def test_logs_reach_application_insights_with_entra_auth_and_without_secrets(access_token):
    """Through the real distro and exporter, to a loopback ingestion endpoint (TLS), with a
    token from a loopback App Service managed-identity endpoint."""
    from devtools.fakes.identity import FakeManagedIdentity
    from tests.fakes.app_insights import FakeIngestion

    values = {
        "runId": f"run-{uuid.uuid4().hex[:12]}",
        "deviceId": str(uuid.uuid4()),
        "reportId": str(uuid.uuid4()),
        "token": access_token,
    }
    client_id = str(uuid.uuid4())
    with FakeIngestion() as ingestion, FakeManagedIdentity() as identity:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "APPLICATIONINSIGHTS_CONNECTION_STRING": ingestion.connection_string(str(uuid.uuid4())),
            "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"Authorization=AAD;ClientId={client_id}",
            "REQUESTS_CA_BUNDLE": ingestion.ca_file,
            # Nothing leaves loopback: no statsbeat, no cloud resource probes.
            "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true",
            "OTEL_EXPERIMENTAL_RESOURCE_DETECTORS": "azure_app_service",
            **identity.environment(),
        }
        completed = subprocess.run(
            [sys.executable, "-c", _EXPORT_SCRIPT, json.dumps(values)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=90,
            check=False,
        )
        assert completed.returncode == 0, completed.stderr[-3000:]
        messages = {m["message"]: m.get("properties", {}) for m in ingestion.messages()}
        requests = list(ingestion.requests)
        resources = list(identity.resources)
        tokens_valid = all(
            r.authorization is not None
            and r.authorization.startswith("Bearer ")
            and identity.is_valid(
                r.authorization.removeprefix("Bearer "), "https://monitor.azure.com"
            )
            for r in requests
        )

    assert requests, completed.stderr[-3000:]
    assert tokens_valid  # every upload carried the managed identity's Azure Monitor token
    assert any(r.rstrip("/") == "https://monitor.azure.com" for r in resources)
    progress = messages["discovery progress"]
    assert progress["runId"] == values["runId"]
    assert str(progress["pages"]) == "3"
    rejected = messages[f"rejected a report: Authorization was Bearer {REDACTED}"]
    assert rejected["deviceId"] == values["deviceId"]
    assert rejected["reportId"] == values["reportId"]
    assert all(access_token not in r.body for r in requests)


def test_per_request_library_logs_are_quieted_unless_a_level_was_chosen():
    script = (
        "import json, logging\n"
        "logging.basicConfig(level=logging.INFO)  # as the Functions worker does\n"
        "logging.getLogger('azure.identity').setLevel(logging.DEBUG)  # an operator's choice\n"
        "from shared.telemetry import configure_telemetry\n"
        "configure_telemetry()\n"
        "names = ['httpx', 'azure.core.pipeline.policies.http_logging_policy', 'azure.identity',\n"
        "         'shared.discovery']\n"
        "print(json.dumps({n: logging.getLogger(n).isEnabledFor(logging.INFO) for n in names}))\n"
    )
    completed = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={"PATH": os.environ.get("PATH", "")},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(completed.stdout.strip().splitlines()[-1]) == {
        "httpx": False,  # Graph page URLs, once per page
        "azure.core.pipeline.policies.http_logging_policy": False,  # every storage call
        "azure.identity": True,  # kept at the level the operator set
        "shared.discovery": True,  # the app's own progress lines stay
    }
