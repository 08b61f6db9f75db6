"""The `make run` demo servers: Development only, loopback only, and discovery works on them."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest

from devhost.azurite import StorageAccount, free_port
from devtools.demo import DEMO_USERS, DemoRefused, demo_servers
from shared.storage import Storage
from tests.discovery.conftest import user_rows, wait_until
from tests.support.devhost import DevHostProcess
from tests.support.settings import product_env


def demo_values(account: StorageAccount, tenant: str, **overrides: str) -> dict[str, str]:
    return product_env(
        account.connection_string,
        AAD_TENANT_ID=tenant,
        GRAPH_BASE_URL=f"http://127.0.0.1:{free_port()}/v1.0",
        IDENTITY_ENDPOINT=f"http://127.0.0.1:{free_port()}/msi/token",
        IDENTITY_HEADER="demo-header",
        AAD_AUTHORITY_HOST=f"http://127.0.0.1:{free_port()}",
        **overrides,
    )


def test_refused_outside_development(own_account: StorageAccount) -> None:
    values = demo_values(own_account, str(uuid.uuid4()), AZURE_FUNCTIONS_ENVIRONMENT="Production")
    with pytest.raises(DemoRefused, match="Development"), demo_servers(values):
        pass


def test_real_settings_start_nothing(own_account: StorageAccount) -> None:
    values = product_env(
        own_account.connection_string,
        GRAPH_BASE_URL="https://graph.microsoft.com/v1.0",
        AAD_AUTHORITY_HOST="https://login.microsoftonline.com",
    )
    with demo_servers(values) as lines:
        assert lines == ["Demo: no loopback Graph/identity/issuer configured; using real ones"]


async def test_demo_directory_fills_the_tables_through_the_host(
    own_account: StorageAccount, own_storage: Storage
) -> None:
    tenant = str(uuid.uuid4())
    values = demo_values(own_account, tenant)
    with demo_servers(values) as lines, DevHostProcess(values) as host:
        text = "\n".join(lines)
        assert "DEMO Microsoft Graph with 3000 sample users" in text
        admin_token = re.search(r"ADMIN_TOKEN=(\S+)", text)
        assert admin_token is not None
        async with httpx.AsyncClient(timeout=30) as http:
            started = await http.post(
                host.url("/admin/functions/discovery_full"), json={"input": ""}
            )
            assert started.status_code == 202

            async def succeeded() -> list[dict[str, object]] | None:
                response = await http.get(
                    host.url("/api/discovery/runs"),
                    headers={"Authorization": f"Bearer {admin_token.group(1)}"},
                )
                assert response.status_code == 200, response.text
                runs = response.json()["runs"]
                return runs if runs and runs[0]["status"] == "succeeded" else None

            runs = await wait_until(succeeded, 60, "the demo full run succeeds")
    assert runs[0]["upserts"] == DEMO_USERS
    rows = await user_rows(own_storage, tenant)
    assert len(rows) == DEMO_USERS
    assert all(row["displayName"].startswith("DEMO User") for row in rows.values())
