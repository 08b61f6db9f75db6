"""Table and Queue storage in one place, from `AzureWebJobsStorage` in every form Azure accepts.

- a connection string (account key or SAS), or `UseDevelopmentStorage=true` (Azurite);
- identity-based: `AzureWebJobsStorage__accountName`, or `__tableServiceUri` and
  `__queueServiceUri`, authenticated as the app's identity (`shared.identity`: `__clientId`
  selects a user-assigned identity; `__credential=managedidentity` uses managed identity only).

Tables and queues are created on first use. Queue messages are base64, as the Functions host
expects by default. Clients are async and cached per event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import urllib.request
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from azure.core import MatchConditions
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import (
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.data.tables import TransactionOperation, UpdateMode
from azure.data.tables.aio import TableClient, TableServiceClient
from azure.storage.queue import TextBase64DecodePolicy, TextBase64EncodePolicy
from azure.storage.queue.aio import QueueClient, QueueServiceClient

from shared.errors import SettingError, StorageUnavailable
from shared.identity import app_credential
from shared.per_loop import PerLoop

SETTING: Final = "AzureWebJobsStorage"
TRANSACTION_LIMIT: Final = 100  # operations in one table transaction
TRANSACTIONS_IN_FLIGHT: Final = 4  # ~1,000 upserts/s on Azurite (docs/contract.md facts)

TableOperation = tuple[TransactionOperation, dict[str, Any], dict[str, Any]]
# Azurite's well-known development account (public, documented by Microsoft).
DEVELOPMENT_CONNECTION_STRING: Final = (
    "DefaultEndpointsProtocol=http;AccountName=devstoreaccount1;"
    "AccountKey=Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==;"
    "BlobEndpoint=http://127.0.0.1:10000/devstoreaccount1;"
    "QueueEndpoint=http://127.0.0.1:10001/devstoreaccount1;"
    "TableEndpoint=http://127.0.0.1:10002/devstoreaccount1;"
)
# Fail fast when storage is down: a health probe or an HTTP caller should not wait a minute.
_CLIENT_OPTIONS: Final[dict[str, Any]] = {
    "retry_total": 3,
    "retry_backoff_factor": 0.5,
    "connection_timeout": 5,
    "read_timeout": 30,
}
# azure-storage-queue ignores retry_backoff_factor: its own ExponentialRetry waits 15 s, 18 s,
# 24 s (85 s to report an outage). About 1 s between its 3 retries instead.
_QUEUE_OPTIONS: Final[dict[str, Any]] = {
    **_CLIENT_OPTIONS,
    "initial_backoff": 0,
    "increment_base": 1,
    "random_jitter_range": 0.5,
}


def _environment_options() -> dict[str, Any]:
    """Skip aiohttp's per-request environment lookups unless the environment names a proxy.

    With `use_env_settings` (the default) aiohttp looks for HTTP(S)_PROXY and ~/.netrc in a worker
    thread on every request: about 0.4 ms of CPU per table call. Without a proxy there is nothing
    to find (and netrc credentials could only clash with the storage Authorization header).
    """
    proxies = urllib.request.getproxies()
    return {} if {"http", "https"} & proxies.keys() else {"use_env_settings": False}


@dataclass(frozen=True, slots=True)
class StorageConfig:
    """Where storage is and how to authenticate. Never logged: it may hold an account key."""

    connection_string: str | None = None
    table_endpoint: str | None = None
    queue_endpoint: str | None = None
    client_id: str | None = None
    managed_identity_only: bool = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> StorageConfig:
        value = env.get(SETTING, "").strip()
        if value:
            return cls(connection_string=_connection_string(value))
        prefix = SETTING + "__"
        account = env.get(prefix + "accountName", "").strip()
        table = env.get(prefix + "tableServiceUri", "").strip()
        queue = env.get(prefix + "queueServiceUri", "").strip()
        if account:
            table = table or f"https://{account}.table.core.windows.net"
            queue = queue or f"https://{account}.queue.core.windows.net"
        if not (table and queue):
            raise SettingError(
                SETTING,
                "a connection string, UseDevelopmentStorage=true, or identity-based "
                "AzureWebJobsStorage__accountName (or __tableServiceUri and __queueServiceUri)",
                missing=not any((table, queue)),
                value=None if not any((table, queue)) else "only one service URI",
            )
        for name, uri in (("tableServiceUri", table), ("queueServiceUri", queue)):
            if not uri.startswith("https://"):
                raise SettingError(prefix + name, "an https service URI", value=uri)
        return cls(
            table_endpoint=table,
            queue_endpoint=queue,
            client_id=env.get(prefix + "clientId", "").strip() or None,
            managed_identity_only=env.get(prefix + "credential", "").strip().lower()
            == "managedidentity",
        )


def _connection_string(value: str) -> str:
    if value.replace(" ", "").lower() == "usedevelopmentstorage=true":
        return DEVELOPMENT_CONNECTION_STRING
    keys = {part.split("=", 1)[0].strip().lower() for part in value.split(";") if "=" in part}
    has_account = "accountname" in keys and (
        "accountkey" in keys or "sharedaccesssignature" in keys
    )
    has_endpoints = {"tableendpoint", "queueendpoint"} <= keys
    if not (has_account or has_endpoints):
        raise SettingError(
            SETTING,
            "a storage connection string with AccountName and AccountKey (or a SAS), "
            "or UseDevelopmentStorage=true",
            value="<connection string not shown>",
        )
    return value


class Storage:
    """Async Table and Queue clients for one account; tables and queues made on first use."""

    def __init__(self, config: StorageConfig) -> None:
        self._credential: AsyncTokenCredential | None = None
        table_options = {**_CLIENT_OPTIONS, **_environment_options()}
        queue_options = {**_QUEUE_OPTIONS, **_environment_options()}
        if config.connection_string:
            self.tables = TableServiceClient.from_connection_string(
                config.connection_string, **table_options
            )
            self.queues = QueueServiceClient.from_connection_string(
                config.connection_string, **queue_options
            )
        else:
            assert config.table_endpoint
            assert config.queue_endpoint
            self._credential = app_credential(
                config.client_id, managed_identity_only=config.managed_identity_only
            )
            self.tables = TableServiceClient(
                config.table_endpoint, credential=self._credential, **table_options
            )
            self.queues = QueueServiceClient(
                config.queue_endpoint, credential=self._credential, **queue_options
            )
        # Clients are kept: building one per call costs more CPU than a table request.
        self._tables: dict[str, TableClient] = {}
        self._queues: dict[tuple[str, bool], QueueClient] = {}
        self._lock = asyncio.Lock()

    async def table(self, name: str) -> TableClient:
        """A client for table `name`, created in storage the first time it is asked for."""
        client = self._tables.get(name)
        if client is None:
            async with self._lock, translate_errors():
                client = self._tables.get(name)
                if client is None:
                    with contextlib.suppress(ResourceExistsError):
                        await self.tables.create_table(name)
                    client = self._tables[name] = self.tables.get_table_client(name)
        return client

    async def queue(self, name: str, *, base64: bool = True) -> QueueClient:
        """A client for queue `name`, created the first time.

        Messages are base64, as the Functions host expects; `base64=False` moves the wire text
        untouched (the development host decodes per host.json itself).
        """
        key = (name, base64)
        client = self._queues.get(key)
        if client is None:
            async with self._lock, translate_errors():
                client = self._queues.get(key)
                if client is None:
                    policies = (
                        {
                            "message_encode_policy": TextBase64EncodePolicy(),
                            "message_decode_policy": TextBase64DecodePolicy(),
                        }
                        if base64
                        else {}
                    )
                    client = self.queues.get_queue_client(name, **policies)
                    with contextlib.suppress(ResourceExistsError):
                        await client.create_queue()
                    self._queues[key] = client
        return client

    async def ping(self) -> None:
        """Raise `StorageUnavailable` unless both the Table and Queue services answer.

        One attempt each, no retries: a health probe answers at once and the platform probes
        again (App Service every minute), where the clients' 3 retries would hold it ~3.5 s."""
        async with translate_errors():
            async for _ in self.tables.list_tables(results_per_page=1, retry_total=0):
                break
            async for _ in self.queues.list_queues(results_per_page=1, retry_total=0):
                break

    async def close(self) -> None:
        await self.tables.close()
        await self.queues.close()
        if self._credential is not None:
            await self._credential.close()


@contextlib.asynccontextmanager
async def translate_errors() -> AsyncIterator[None]:
    """Turn connection failures and storage 5xx/408/429 into `StorageUnavailable`."""
    try:
        yield
    except (TimeoutError, ServiceRequestError, ServiceResponseError, OSError) as error:
        raise StorageUnavailable(type(error).__name__) from error
    except HttpResponseError as error:
        if error.status_code in (408, 429) or (error.status_code or 0) >= 500:
            raise StorageUnavailable(f"storage answered {error.status_code}") from error
        raise


_storage: PerLoop[Storage] = PerLoop(lambda: Storage(StorageConfig.from_env(os.environ)))


def upsert_replace(entity: dict[str, Any]) -> TableOperation:
    return (TransactionOperation.UPSERT, entity, {"mode": UpdateMode.REPLACE})


def upsert_merge(entity: dict[str, Any]) -> TableOperation:
    return (TransactionOperation.UPSERT, entity, {"mode": UpdateMode.MERGE})


class Transactions:
    """Submits operations of one partition `TRANSACTION_LIMIT` a transaction, at most
    `TRANSACTIONS_IN_FLIGHT` transactions at once across every call on this object."""

    def __init__(self) -> None:
        self._slots = asyncio.Semaphore(TRANSACTIONS_IN_FLIGHT)

    async def submit(self, table: TableClient, operations: Sequence[TableOperation]) -> None:
        chunks = [
            operations[start : start + TRANSACTION_LIMIT]
            for start in range(0, len(operations), TRANSACTION_LIMIT)
        ]
        await asyncio.gather(*(self._transaction(table, chunk) for chunk in chunks))

    async def _transaction(self, table: TableClient, chunk: Sequence[TableOperation]) -> None:
        async with self._slots, translate_errors():
            await table.submit_transaction(list(chunk))


async def write_if_unchanged(
    table: TableClient, entity: Mapping[str, Any], etag: str | None
) -> str | None:
    """Create the row (`etag` None: it was not there when read) or replace it whole if its ETag
    is still `etag`: the new ETag, or None when another writer got in first. The optimistic
    concurrency every state row here relies on (leases, checkpoints, counters)."""
    try:
        async with translate_errors():
            if etag is None:
                meta = await table.create_entity(entity)
            else:
                meta = await table.update_entity(
                    entity,
                    mode=UpdateMode.REPLACE,
                    etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )
    except (ResourceExistsError, ResourceModifiedError):
        return None
    except HttpResponseError as error:
        if error.status_code == 412:  # a precondition failure the SDK did not map
            return None
        raise
    return str(meta["etag"])


async def partition_page(
    table: TableClient, partition_key: str, *, size: int, after: str | None
) -> tuple[list[dict[str, Any]], str | None]:
    """Up to `size` rows of one partition in RowKey order after the RowKey `after`, and the
    RowKey to pass back as `after` for the next page (None at the end).

    The one paging scheme of the admin lists: the answer's opaque `next` is that RowKey, so a
    page is one range query of `size + 1` rows (the extra row only says whether more follow),
    never a scan.
    """
    query = "PartitionKey eq @partition"
    parameters = {"partition": partition_key}
    if after:
        query += " and RowKey gt @after"
        parameters["after"] = after
    rows: list[dict[str, Any]] = []
    async with translate_errors():
        async for row in table.query_entities(
            query, parameters=parameters, results_per_page=size + 1
        ):
            if len(rows) == size:
                return rows, rows[-1]["RowKey"]
            rows.append(row)
    return rows, None


def get_storage() -> Storage:
    """The storage of this process's event loop, built from the environment on first use."""
    return _storage.get()


async def close_storage() -> None:
    """Close this loop's storage clients, if `get_storage()` made them."""
    storage = _storage.peek()
    if storage is not None:
        _storage.discard()
        await storage.close()
