"""Valid product settings for tests; each test overrides what it is about."""

from __future__ import annotations

from typing import Final

from devtools.tenant import CLIENT_APP_ID, RESOURCE_URI, SERVER_APP_ID, TENANT_ID, TENANT_NAME

__all__ = [
    "CCM_HOSTNAME",
    "CLIENT_APP_ID",
    "RESOURCE_URI",
    "SERVER_APP_ID",
    "SITE_CODE",
    "TENANT_ID",
    "TENANT_NAME",
    "product_env",
]

CCM_HOSTNAME: Final = "SCCMPROXYCONTOSO.CLOUDAPP.NET/CCM_Proxy_ServerAuth/72457598037527932"
SITE_CODE: Final = "ABC"


def product_env(storage_connection_string: str, **overrides: str) -> dict[str, str]:
    """Every required setting with a valid value, in Development, pointing at `storage`."""
    env = {
        "FUNCTIONS_WORKER_RUNTIME": "python",
        "AZURE_FUNCTIONS_ENVIRONMENT": "Development",
        "AzureWebJobsStorage": storage_connection_string,
        "AAD_TENANT_ID": TENANT_ID,
        "AAD_TENANT_NAME": TENANT_NAME,
        "AAD_SERVER_APP_ID": SERVER_APP_ID,
        "AAD_RESOURCE_URI": RESOURCE_URI,
        "AAD_CLIENT_APP_ID": CLIENT_APP_ID,
        "CCM_HOSTNAME": CCM_HOSTNAME,
        "SMS_SITE_CODE": SITE_CODE,
        # Timers exist but never fire during a test unless the test asks for a schedule.
        "DISCOVERY_FULL_SCHEDULE": "0 0 0 1 1 *",
        "DISCOVERY_DELTA_SCHEDULE": "0 0 0 1 1 *",
        "GRAPH_SUBSCRIPTION_SCHEDULE": "0 0 0 1 1 *",
    }
    env.update(overrides)
    return env
