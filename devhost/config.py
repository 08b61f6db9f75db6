"""What the host reads before it starts: local.settings.json, host.json and `%SETTING%` values."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Final

LOCAL_SETTINGS: Final = "local.settings.json"
NO_LOCAL_SETTINGS_VARIABLE: Final = "DEVHOST_NO_LOCAL_SETTINGS"
_SETTING_REFERENCE = re.compile(r"%([^%]+)%")
# host.json timespans: "hh:mm:ss", "hh:mm:ss.fff" or "d.hh:mm:ss".
_TIMESPAN = re.compile(r"(?:(\d+)\.)?(\d{1,2}):(\d{1,2}):(\d{1,2}(?:\.\d+)?)")


class HostConfigError(Exception):
    """A setting, host.json value or binding the host cannot start with; the message is one line."""


def load_local_settings(script_root: Path, environ: MutableMapping[str, str]) -> list[str]:
    """Copy `Values` from local.settings.json into `environ` without overriding what is set.

    Returns the names that were added (never their values: they can hold keys).
    """
    path = script_root / LOCAL_SETTINGS
    if not path.is_file():
        return []
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise HostConfigError(f"{path} is not valid JSON: {error}") from None
    values = document.get("Values", {}) if isinstance(document, dict) else {}
    if not isinstance(values, dict):
        raise HostConfigError(f"{path}: 'Values' must be an object of strings")
    added = []
    for name, value in values.items():
        if name not in environ and value is not None:
            environ[name] = str(value)
            added.append(name)
    return added


def local_settings_disabled(environ: Mapping[str, str] = os.environ) -> bool:
    return environ.get(NO_LOCAL_SETTINGS_VARIABLE, "").strip() in {"1", "true", "True"}


def resolve_settings(value: str, environ: Mapping[str, str], *, where: str) -> str:
    """Replace each `%NAME%` with the app setting NAME, as the Functions host does."""

    def lookup(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in environ:
            raise HostConfigError(f"{where}: app setting '{name}' is not set")
        return environ[name]

    return _SETTING_REFERENCE.sub(lookup, value)


def parse_timespan(value: object, *, where: str) -> timedelta:
    text = str(value).strip()
    match = _TIMESPAN.fullmatch(text)
    if match is None:
        raise HostConfigError(f"host.json {where}: expected a timespan like 00:00:30, got {text!r}")
    days, hours, minutes, seconds = match.groups()
    return timedelta(
        days=int(days or 0), hours=int(hours), minutes=int(minutes), seconds=float(seconds)
    )


_DEFAULT_BATCH_SIZE: Final = 16
_DEFAULT_MAX_POLLING_INTERVAL: Final = timedelta(minutes=1)
_DEFAULT_DEQUEUES: Final = 5


@dataclass(frozen=True, slots=True)
class QueueOptions:
    """`extensions.queues` of host.json, with the Functions host's defaults."""

    batch_size: int = _DEFAULT_BATCH_SIZE
    new_batch_threshold: int = _DEFAULT_BATCH_SIZE // 2
    max_polling_interval: timedelta = _DEFAULT_MAX_POLLING_INTERVAL
    visibility_timeout: timedelta = timedelta(0)
    max_dequeue_count: int = _DEFAULT_DEQUEUES
    base64: bool = True

    @classmethod
    def from_host_json(cls, section: Mapping[str, Any]) -> QueueOptions:
        batch_size = int(section.get("batchSize", _DEFAULT_BATCH_SIZE))
        if not 1 <= batch_size <= 32:
            raise HostConfigError("host.json extensions.queues.batchSize: expected 1..32")
        encoding = str(section.get("messageEncoding", "base64")).lower()
        if encoding not in {"base64", "none"}:
            raise HostConfigError("host.json extensions.queues.messageEncoding: base64 or none")
        polling = section.get("maxPollingInterval")
        visibility = section.get("visibilityTimeout")
        return cls(
            batch_size=batch_size,
            new_batch_threshold=int(section.get("newBatchThreshold", batch_size // 2)),
            max_polling_interval=(
                parse_timespan(polling, where="extensions.queues.maxPollingInterval")
                if polling is not None
                else _DEFAULT_MAX_POLLING_INTERVAL
            ),
            visibility_timeout=(
                parse_timespan(visibility, where="extensions.queues.visibilityTimeout")
                if visibility is not None
                else timedelta(0)
            ),
            max_dequeue_count=max(1, int(section.get("maxDequeueCount", _DEFAULT_DEQUEUES))),
            base64=encoding == "base64",
        )


@dataclass(frozen=True, slots=True)
class HostOptions:
    route_prefix: str = "api"
    queues: QueueOptions = QueueOptions()

    @classmethod
    def load(cls, script_root: Path) -> HostOptions:
        path = script_root / "host.json"
        if not path.is_file():
            return cls()
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            extensions = document.get("extensions", {})
            http = extensions.get("http", {})
            return cls(
                route_prefix=str(http.get("routePrefix", "api")).strip("/"),
                queues=QueueOptions.from_host_json(extensions.get("queues", {})),
            )
        except (OSError, ValueError, AttributeError, TypeError) as error:
            raise HostConfigError(f"{path}: {error}") from None
