"""The one credential factory: which identity each client authenticates as."""

from __future__ import annotations

from azure.identity import ManagedIdentityCredential as SyncManagedIdentityCredential
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential

from shared.identity import app_credential, app_credential_sync, managed_identity_client_id

NAMED = "11111111-1111-4111-8111-111111111111"
APP = "22222222-2222-4222-8222-222222222222"


def test_a_named_client_id_wins_over_azure_client_id() -> None:
    env = {"AZURE_CLIENT_ID": APP}
    assert managed_identity_client_id(NAMED, env) == NAMED
    assert managed_identity_client_id(None, env) == APP
    assert managed_identity_client_id(" ", env) == APP
    assert managed_identity_client_id(None, {}) is None  # the system-assigned identity


async def test_managed_identity_only_asks_for_nothing_else() -> None:
    only = app_credential(NAMED, managed_identity_only=True, env={})
    chained = app_credential(env={"AZURE_CLIENT_ID": APP})
    try:
        assert isinstance(only, ManagedIdentityCredential)
        assert isinstance(chained, DefaultAzureCredential)
    finally:
        await only.close()
        await chained.close()
    assert isinstance(
        app_credential_sync(NAMED, managed_identity_only=True, env={}),
        SyncManagedIdentityCredential,
    )
