"""What `GET /api/health` reports: storage reachable, settings valid, last discovery run, and
the Graph change-notification subscriptions (an expiry within 24 hours is unhealthy).

Anyone may ask; only an admin is told more than the status (`public_body` vs `admin_body`).
Whatever is wrong is always written to the log, naming the setting, so the operator who cannot
see the details in an anonymous answer finds them where the app's logs go.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass, field
from typing import Any

from azure.core.exceptions import HttpResponseError

from shared.discovery import SubscriptionConfig, subscription_health
from shared.errors import SettingError, StorageUnavailable
from shared.names import DISCOVERY_RUNS
from shared.settings import Settings, get_settings
from shared.storage import get_storage, translate_errors

_log = logging.getLogger(__name__)


@dataclass(slots=True)
class HealthReport:
    storage_reachable: bool
    settings_valid: bool
    settings_error: str | None = None
    # A storage setting (AzureWebJobsStorage*) that is malformed: storage is then unreachable.
    storage_error: str | None = None
    last_discovery_run: dict[str, Any] | None = field(default=None)
    subscriptions_healthy: bool = True
    subscriptions: list[dict[str, Any]] = field(default_factory=list)

    @property
    def healthy(self) -> bool:
        return self.storage_reachable and self.settings_valid and self.subscriptions_healthy

    @property
    def reason(self) -> str:
        """Why the report is unhealthy, in words an admin may read (no values)."""
        if not self.storage_reachable:
            return "storage is not reachable"
        if not self.settings_valid:
            return "settings are invalid"
        if not self.subscriptions_healthy:
            return "a Graph subscription expires within 24 hours without a renewal"
        return "healthy"

    def public_body(self) -> dict[str, Any]:
        """All an anonymous caller learns: healthy or not."""
        return {"status": "healthy" if self.healthy else "unhealthy"}

    def admin_body(self) -> dict[str, Any]:
        """The details an admin sees."""
        storage: dict[str, Any] = {"reachable": self.storage_reachable}
        if self.storage_error is not None:
            storage["error"] = self.storage_error
        return {
            **self.public_body(),
            "storage": storage,
            "settings": {"valid": self.settings_valid, "error": self.settings_error},
            "lastDiscoveryRun": self.last_discovery_run,
            "subscriptions": self.subscriptions,
        }


async def check_health() -> HealthReport:
    settings: Settings | None = None
    settings_error: str | None = None
    try:
        settings = get_settings()
    except SettingError as error:
        settings_error = str(error)
        _log.error("health: setting error: %s", error)
    report = HealthReport(
        storage_reachable=False, settings_valid=settings is not None, settings_error=settings_error
    )
    try:
        await get_storage().ping()
    except SettingError as error:
        report.storage_error = str(error)
        _log.error("health: storage setting error: %s", error)
        return report
    except (StorageUnavailable, HttpResponseError) as error:
        # A 4xx from storage (a refused identity, a missing role) is as unhealthy as an outage.
        _log.warning("health: storage is not reachable (%s)", type(error).__name__)
        return report
    report.storage_reachable = True
    if settings is not None:
        with contextlib.suppress(StorageUnavailable, HttpResponseError):
            report.last_discovery_run = await _last_run(settings.tenant_id)
        with contextlib.suppress(StorageUnavailable, HttpResponseError):
            await _subscriptions(report, settings)
        if not report.subscriptions_healthy:
            _log.warning("health: a Graph subscription expires within 24 hours")
    return report


async def _subscriptions(report: HealthReport, settings: Settings) -> None:
    """Each Graph subscription's expiry; one expiring within 24 hours makes the app unhealthy
    (a renewal that worked would have moved it ~29 days out)."""
    config = SubscriptionConfig.from_settings(settings)
    report.subscriptions_healthy, report.subscriptions = await subscription_health(config)


async def _last_run(tenant_id: str) -> dict[str, Any] | None:
    """The newest `DiscoveryRuns` row: RowKeys are inverted time, so the first is the newest."""
    storage = get_storage()
    table = await storage.table(DISCOVERY_RUNS)
    async with translate_errors():
        rows = table.query_entities(
            "PartitionKey eq @tenant", parameters={"tenant": tenant_id}, results_per_page=1
        )
        async for row in rows:
            return {
                key: value
                for key, value in row.items()
                if key in ("mode", "trigger", "status", "startedAt", "finishedAt", "error")
            } | {"runId": row["RowKey"]}
    return None
