"""Fixtures of the report tests: the loopback Entra issuer and a host on its own Azurite (so
queue-trigger tests never see another test's messages)."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from devhost.azurite import StorageAccount
from devtools.fakes.entra import EntraIssuer
from tests.reports.helpers import Service, service_on
from tests.support.devhost import REPO_ROOT
from tests.support.issuer import entra_issuer, fresh_entra_issuer

__all__ = ["entra_issuer", "fresh_entra_issuer"]


@pytest.fixture(scope="module")
async def service(
    entra_issuer: EntraIssuer, new_account: Callable[[], StorageAccount]
) -> AsyncIterator[Service]:
    """A host on a storage account of its own, shared by one test module."""
    async with service_on(new_account(), entra_issuer) as running:
        yield running


@pytest.fixture
def script_root_with_fast_retries(tmp_path: Path) -> Path:
    """The app as deployed, with host.json retrying a failed message at once (visibility 0)."""
    shutil.copy(REPO_ROOT / "function_app.py", tmp_path / "function_app.py")
    host_json = json.loads((REPO_ROOT / "host.json").read_text())
    host_json["extensions"]["queues"]["visibilityTimeout"] = "00:00:00"
    (tmp_path / "host.json").write_text(json.dumps(host_json))
    return tmp_path
