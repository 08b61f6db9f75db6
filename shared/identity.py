"""The app's Azure identity: the one place a token credential is made, for storage, Microsoft Graph,
Key Vault and Application Insights alike.

Which identity, from the app settings Azure documents (README "Settings"):
- a client id the caller names (`AzureWebJobsStorage__clientId`, the `ClientId` of
  `APPLICATIONINSIGHTS_AUTHENTICATION_STRING`), else `AZURE_CLIENT_ID`, else none: the
  user-assigned managed identity with that client id, or the system-assigned one;
- `managed_identity_only` (`AzureWebJobsStorage__credential=managedidentity`, and Entra ingestion
  for Application Insights): the managed identity and nothing else; otherwise
  `DefaultAzureCredential`, which also takes a developer's `az login` or environment credentials
  on a workstation.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Final

from azure.core.credentials import TokenCredential
from azure.core.credentials_async import AsyncTokenCredential

CLIENT_ID_SETTING: Final = "AZURE_CLIENT_ID"


def managed_identity_client_id(
    client_id: str | None = None, env: Mapping[str, str] | None = None
) -> str | None:
    """`client_id` when given, else `AZURE_CLIENT_ID`, else None (the system-assigned identity)."""
    env = os.environ if env is None else env
    return (client_id or "").strip() or env.get(CLIENT_ID_SETTING, "").strip() or None


def app_credential(
    client_id: str | None = None,
    *,
    managed_identity_only: bool = False,
    env: Mapping[str, str] | None = None,
) -> AsyncTokenCredential:
    """An async credential for the app's identity (see the module docstring). Close it."""
    from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

    chosen = managed_identity_client_id(client_id, env)
    if managed_identity_only:
        return ManagedIdentityCredential(client_id=chosen)
    return DefaultAzureCredential(managed_identity_client_id=chosen)


def app_credential_sync(
    client_id: str | None = None,
    *,
    managed_identity_only: bool = False,
    env: Mapping[str, str] | None = None,
) -> TokenCredential:
    """The same identity for synchronous clients (the Application Insights exporter)."""
    from azure.identity import DefaultAzureCredential, ManagedIdentityCredential

    chosen = managed_identity_client_id(client_id, env)
    if managed_identity_only:
        return ManagedIdentityCredential(client_id=chosen)
    return DefaultAzureCredential(managed_identity_client_id=chosen)
