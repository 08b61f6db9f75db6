"""Session-wide real components: one Azurite for the whole run, started here, never assumed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from devhost.azurite import Azurite, running_azurite
from shared.storage import Storage
from tests.support.storage import storage_on


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with running_azurite() as instance:
        yield instance


@pytest.fixture(scope="session")
async def storage(azurite: Azurite) -> AsyncIterator[Storage]:
    """Async Table and Queue clients on the session's Azurite (the product's own `Storage`)."""
    async with storage_on(azurite) as instance:
        yield instance
