"""tests/devhost_app, the function app that proves the development host, and its settings."""

from __future__ import annotations

import uuid
from typing import Final

from devhost.azurite import Azurite
from tests.support.devhost import REPO_ROOT

APP: Final = REPO_ROOT / "tests" / "devhost_app"
NEVER: Final = "0 0 0 1 1 *"  # an NCRONTAB schedule that does not fire during a run


def app_env(azurite: Azurite, **overrides: str) -> dict[str, str]:
    """Settings for the test app with fresh queue and table names."""
    suffix = uuid.uuid4().hex[:10]
    env = {
        "AzureWebJobsStorage": azurite.connection_string,
        "RECORD_TABLE": f"rec{suffix}",
        "TICK_SCHEDULE": NEVER,
        "OVERRUN_SCHEDULE": NEVER,
        "RELAY_IN_QUEUE": f"relay-in-{suffix}",
        "RELAY_OUT_QUEUE": f"relay-out-{suffix}",
        "DOOMED_QUEUE": f"doomed-{suffix}",
        "SLOW_QUEUE": f"slow-{suffix}",
    }
    env.update(overrides)
    return env
