"""Raw queue clients per binding `connection`, read from the app settings as the Functions host
reads them: the setting itself (a connection string, or `UseDevelopmentStorage=true` for Azurite on
its default ports), or identity-based `<connection>__queueServiceUri` / `__accountName`, with
`__clientId` (a user-assigned identity) and `__credential=managedidentity`.

The host handles base64 itself (as the Functions host does, per host.json `messageEncoding`), so
these clients send and receive the wire text untouched; a poison copy is then byte-for-byte intact.
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterable, Mapping
from typing import Any, Final

from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ResourceExistsError
from azure.identity.aio import DefaultAzureCredential, ManagedIdentityCredential
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from devhost.azurite import ACCOUNT, ACCOUNT_KEY, HOST, AzuritePorts
from devhost.config import HostConfigError

# Fail fast when storage is down: about 1 s between 3 retries (the SDK's own backoff waits 15 s,
# 18 s, 24 s), so a listener notices an outage, and its end, within seconds.
_CLIENT_OPTIONS: Final[dict[str, Any]] = {
    "retry_total": 3,
    "initial_backoff": 0,
    "increment_base": 1,
    "random_jitter_range": 0.5,
    "connection_timeout": 5,
    "read_timeout": 30,
}


def development_connection_string() -> str:
    """`UseDevelopmentStorage=true`: Azurite's well-known account on its default ports."""
    return (
        f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
        f"QueueEndpoint=http://{HOST}:{AzuritePorts.default().queue}/{ACCOUNT};"
    )


def encode_message(body: bytes, *, base64_encoding: bool) -> str:
    if base64_encoding:
        return base64.b64encode(body).decode("ascii")
    return body.decode("utf-8")


class _Account:
    """One storage account's queue service (and the credential it owns)."""

    def __init__(self, connection: str, environ: Mapping[str, str]) -> None:
        self.credential: AsyncTokenCredential | None = None
        self.service = self._service(connection, environ)
        self.queues: dict[str, QueueClient] = {}

    def _service(self, connection: str, environ: Mapping[str, str]) -> QueueServiceClient:
        value = environ.get(connection, "").strip()
        if value.replace(" ", "").lower() == "usedevelopmentstorage=true":
            value = development_connection_string()
        if value:
            try:
                return QueueServiceClient.from_connection_string(value, **_CLIENT_OPTIONS)
            except ValueError:  # its message may quote the account key
                raise HostConfigError(
                    f"{connection} is malformed: expected a storage connection string "
                    "or UseDevelopmentStorage=true"
                ) from None
        prefix = connection + "__"
        account = environ.get(prefix + "accountName", "").strip()
        uri = environ.get(prefix + "queueServiceUri", "").strip()
        uri = uri or (f"https://{account}.queue.core.windows.net" if account else "")
        if not uri:
            raise HostConfigError(
                f"{connection} is required: a connection string, UseDevelopmentStorage=true, "
                f"or {prefix}accountName (or {prefix}queueServiceUri)"
            )
        client_id = environ.get(prefix + "clientId", "").strip() or None
        if environ.get(prefix + "credential", "").strip().lower() == "managedidentity":
            self.credential = ManagedIdentityCredential(client_id=client_id)
        else:
            self.credential = DefaultAzureCredential(managed_identity_client_id=client_id)
        return QueueServiceClient(uri, credential=self.credential, **_CLIENT_OPTIONS)

    async def close(self) -> None:
        await self.service.close()
        if self.credential is not None:
            await self.credential.close()


class QueueClients:
    """One queue service per connection setting, on the host's loop; queues made on first use."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._accounts: dict[str, _Account] = {}

    def check(self, connection: str) -> None:
        """Fail at start-up, with one line, when a connection setting is missing or malformed."""
        self._account(connection)

    def _account(self, connection: str) -> _Account:
        account = self._accounts.get(connection)
        if account is None:
            account = self._accounts[connection] = _Account(connection, self._environ)
        return account

    async def queue(self, connection: str, name: str) -> QueueClient:
        account = self._account(connection)
        client = account.queues.get(name)
        if client is None:
            client = account.service.get_queue_client(name)
            with contextlib.suppress(ResourceExistsError):
                await client.create_queue()
            account.queues[name] = client
        return client

    async def send(
        self, connection: str, name: str, bodies: Iterable[bytes], *, base64_encoding: bool
    ) -> None:
        client = await self.queue(connection, name)
        for body in bodies:
            await client.send_message(encode_message(body, base64_encoding=base64_encoding))

    async def close(self) -> None:
        for account in self._accounts.values():
            await account.close()
        self._accounts.clear()
