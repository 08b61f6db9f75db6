"""The product's own `Storage` on a test Azurite, closed when the block ends."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from devhost.azurite import Azurite, StorageAccount
from shared.storage import Storage, StorageConfig


@contextlib.asynccontextmanager
async def storage_on(azurite: Azurite | StorageAccount) -> AsyncIterator[Storage]:
    storage = Storage(StorageConfig(connection_string=azurite.connection_string))
    try:
        yield storage
    finally:
        await storage.close()
