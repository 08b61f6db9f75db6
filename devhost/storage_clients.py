"""Raw queue clients per binding `connection`, built by `shared.storage` (one parser of settings).

The host handles base64 itself (as the Functions host does, per host.json `messageEncoding`), so
these clients send and receive the wire text untouched; a poison copy is then byte-for-byte intact.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping

from azure.storage.queue.aio import QueueClient

from devhost.app_index import DEFAULT_CONNECTION
from devhost.config import HostConfigError
from shared.errors import SettingError
from shared.storage import SETTING, Storage, StorageConfig, translate_errors


def encode_message(body: bytes, *, base64_encoding: bool) -> str:
    if base64_encoding:
        return base64.b64encode(body).decode("ascii")
    return body.decode("utf-8")


class QueueClients:
    """One `Storage` per connection setting, on the host's loop; queues made on first use."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ
        self._storages: dict[str, Storage] = {}

    def check(self, connection: str) -> None:
        """Fail at start-up, with one line, when a connection setting is missing or malformed."""
        self._config(connection)

    def _config(self, connection: str) -> StorageConfig:
        # StorageConfig reads AzureWebJobsStorage[__*]: present the binding's setting under it.
        prefix = connection + "__"
        view = {
            SETTING + name[len(connection) :]: value
            for name, value in self._environ.items()
            if name == connection or name.startswith(prefix)
        }
        try:
            return StorageConfig.from_env(view)
        except SettingError as error:
            if connection == DEFAULT_CONNECTION:
                raise HostConfigError(str(error)) from None
            raise HostConfigError(f"connection '{connection}': {error}") from None

    def storage(self, connection: str) -> Storage:
        storage = self._storages.get(connection)
        if storage is None:
            storage = self._storages[connection] = Storage(self._config(connection))
        return storage

    async def queue(self, connection: str, name: str) -> QueueClient:
        return await self.storage(connection).queue(name, base64=False)

    async def send(
        self, connection: str, name: str, bodies: Iterable[bytes], *, base64_encoding: bool
    ) -> None:
        client = await self.queue(connection, name)
        async with translate_errors():
            for body in bodies:
                await client.send_message(encode_message(body, base64_encoding=base64_encoding))

    async def close(self) -> None:
        for storage in self._storages.values():
            await storage.close()
        self._storages.clear()
