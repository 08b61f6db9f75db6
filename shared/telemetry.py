"""Application Insights through OpenTelemetry, and secret redaction for every log record.

`configure_telemetry()` runs once at import of `function_app` (the documented pattern for
`configure_azure_monitor`). It reads only the three environment variables below, never the app's
`Settings`, so a bad app setting cannot stop telemetry from reporting it:

- `APPLICATIONINSIGHTS_CONNECTION_STRING`: unset or empty, nothing is exported (local runs, tests);
- `APPLICATIONINSIGHTS_AUTHENTICATION_STRING` = `Authorization=AAD;ClientId=<id>`: Entra auth with
  the user-assigned managed identity (the component has local auth disabled);
- `AZURE_CLIENT_ID`: that identity when the authentication string names no ClientId.

Redaction is defence in depth: the code never logs tokens or keys, but an exception message or
a third-party library might. Records are scrubbed of bearer tokens, compact JWS/JWT, account and
SAS keys and PEM blocks before any handler formats or exports them.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any, Final

from shared.identity import managed_identity_client_id

CONNECTION_STRING_SETTING: Final = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING_SETTING: Final = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"
# The app's loggers: `logging.getLogger(__name__)` in these packages.
APP_LOGGERS: Final = ("shared", "blueprints")
REDACTED: Final = "[REDACTED]"

_PATTERNS: Final = (
    # PEM blocks, also when cut off before the END line.
    (re.compile(r"-----BEGIN [A-Z0-9 ]+-----.*?(?:-----END [A-Z0-9 ]+-----|\Z)", re.S), REDACTED),
    # Compact JWS/JWT/JWE: base64url JSON header ("eyJ" is '{"') then 2 to 4 more segments.
    (re.compile(r"\beyJ[A-Za-z0-9_-]*(?:\.[A-Za-z0-9_-]*){2,4}"), REDACTED),
    # Authorization headers and token fields, whatever the token looks like.
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9\-._~+/]+=*"), rf"\1 {REDACTED}"),
    # Connection-string and query-string secrets.
    (
        re.compile(
            r"(?i)\b(AccountKey|SharedAccessKey|SharedAccessSignature|sig|client_secret|"
            r"password|access_token|refresh_token|id_token|assertion)=([^;&\s\"',]+)"
        ),
        rf"\1={REDACTED}",
    ),
    (
        re.compile(
            r"(?i)([\"']?(?:access_token|refresh_token|id_token|client_secret|password|"
            r"x-identity-header)[\"']?\s*:\s*[\"'])([^\"']+)"
        ),
        rf"\1{REDACTED}",
    ),
)
# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD_ATTRIBUTES: Final = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys() | {"message", "asctime"}
)

_configured = False
_lock = threading.Lock()


# Cheap first pass (lower-cased substrings): most log lines hold none and skip the patterns.
_SECRET_HINTS: Final = (
    "eyj",
    "-----begin ",
    "bearer",
    "basic",
    "key=",
    "signature=",
    "sig=",
    "secret",
    "password",
    "_token",
    "assertion=",
    "identity-header",
)


def redact(text: str) -> str:
    """`text` with every secret-looking part replaced by [REDACTED]."""
    lowered = text.lower()
    if not any(hint in lowered for hint in _SECRET_HINTS):
        return text
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {key: _redact_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(item) for item in value)
    return value


class RedactSecrets(logging.Filter):
    """Scrubs a record's message, `extra=` attributes, traceback and stack in place.

    A traceback that held a secret is kept only as redacted text (`exc_text`): the exception
    object itself cannot be scrubbed, so `exc_info` is dropped rather than exported.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # malformed %-args: logging reports those itself
            return True
        record.msg, record.args = redact(message), None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD_ATTRIBUTES:
                setattr(record, key, _redact_value(value))
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            scrubbed = redact(record.exc_text)
            if scrubbed != record.exc_text:
                record.exc_info = None
            record.exc_text = scrubbed
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True


_REDACTION: Final = RedactSecrets()


def install_redaction(*loggers: logging.Logger) -> None:
    """Add the redaction filter to every handler of `loggers` (default: root and app loggers)."""
    targets = loggers or (logging.getLogger(), *(logging.getLogger(n) for n in APP_LOGGERS))
    for logger in targets:
        for handler in logger.handlers:
            if _REDACTION not in handler.filters:
                handler.addFilter(_REDACTION)


def entra_client_id(env: Mapping[str, str]) -> str | None:
    """The managed identity client id when the authentication string asks for Entra auth.

    None means no Entra auth was asked for (instrumentation-key ingestion).
    """
    parts = dict(
        part.split("=", 1)
        for part in env.get(AUTHENTICATION_STRING_SETTING, "").split(";")
        if "=" in part
    )
    normalised = {key.strip().lower(): value.strip() for key, value in parts.items()}
    if normalised.get("authorization", "").upper() != "AAD":
        return None
    return managed_identity_client_id(normalised.get("clientid"), env) or ""


# Libraries that log every HTTP request at INFO: Graph page URLs (with opaque skip and delta
# tokens) and each storage call would drown the app's own lines and cost ingestion.
_CHATTY_LOGGERS: Final = (
    "httpx",
    "azure.core.pipeline.policies.http_logging_policy",
    "azure.identity",
)


def quiet_chatty_loggers() -> None:
    """WARNING for per-request library loggers, unless someone already chose a level."""
    for name in _CHATTY_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)


def configure_telemetry(env: Mapping[str, str] | None = None) -> bool:
    """Export to Application Insights when its connection string is set; once per process.

    Returns whether exporting is on. Redaction is installed either way; never raises for a bad
    app setting (it reads none of them).
    """
    global _configured
    env = os.environ if env is None else env
    with _lock:
        if not _configured and env.get(CONNECTION_STRING_SETTING, "").strip():
            _export_to_azure_monitor(env)
            _configured = True
        install_redaction()
        quiet_chatty_loggers()
        return _configured


def _export_to_azure_monitor(env: Mapping[str, str]) -> None:
    # Imported here: without a connection string the app never loads OpenTelemetry.
    from azure.monitor.opentelemetry import configure_azure_monitor

    options: dict[str, Any] = {
        "connection_string": env[CONNECTION_STRING_SETTING].strip(),
        # The app's records carry runId/deviceId/... as attributes (custom dimensions).
        "logger_name": APP_LOGGERS[0],
    }
    client_id = entra_client_id(env)
    if client_id is not None:
        from shared.identity import app_credential_sync  # loads azure-identity: only here

        options["credential"] = app_credential_sync(client_id, managed_identity_only=True, env=env)
    configure_azure_monitor(**options)
    # configure_azure_monitor attaches its handler to one logger: share it with the others.
    exporters = [
        handler
        for handler in logging.getLogger(APP_LOGGERS[0]).handlers
        if type(handler).__name__ == "LoggingHandler"
    ]
    for name in APP_LOGGERS:
        logger = logging.getLogger(name)
        # Progress and audit lines are INFO; the root default (WARNING) would drop them.
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)
        for handler in exporters:
            if handler not in logger.handlers:
                logger.addHandler(handler)
