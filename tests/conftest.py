"""Session-wide real components: one Azurite per test worker, started here, never assumed."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Final

import pytest
from xdist.remote import Producer
from xdist.scheduler import LoadScopeScheduling

from devhost.azurite import Azurite, StorageAccount, running_azurite
from shared.storage import Storage
from tests.support.storage import storage_on

# Parallel workers (pytest-xdist, `-n 4` in pyproject.toml). A module's tests run on one worker,
# where they share its module-scoped storage account and host. The tests of SPREAD modules each
# start their own hosts and wait on them (kill -9 and lease expiry, scale-out): each goes to any
# worker, first. The modules of a PACKAGE share its package-scoped fixtures (the console's fleet of
# recorded devices): they form one unit, built once. Then the units that took longest (7 to 20 s
# each, serially), then the rest: a long one started last would keep one worker busy while the
# others idle.
SPREAD: Final = ("tests/discovery/test_host.py", "tests/reports/test_recording.py")
PACKAGES: Final = ("tests/console/",)
LONGEST: Final = (
    "tests/console/",
    "tests/test_devhost.py",
    "tests/bundles/test_keyvault.py",
    "tests/profiles/test_rebuild.py",
    "tests/device_trust/test_endpoints.py",
    "tests/discovery/test_engine.py",
    "tests/fuzz/test_api.py",
    "tests/reports/test_post.py",
    "tests/bundles/test_outages.py",
    "tests/discovery/test_demo.py",
    "tests/profiles/test_profiles.py",
)


def work_unit(nodeid: str) -> str:
    """A test's unit: itself in a SPREAD module, its PACKAGE, or its module."""
    module = nodeid.split("::")[0]
    if module in SPREAD:
        return nodeid
    return next((package for package in PACKAGES if module.startswith(package)), module)


class ModuleScheduling(LoadScopeScheduling):  # type: ignore[misc]  # xdist is untyped
    """Work units in collection order (`work_unit`)."""

    def _split_scope(self, nodeid: str) -> str:
        return work_unit(nodeid)


def pytest_xdist_make_scheduler(config: pytest.Config, log: Producer) -> ModuleScheduling:
    config.option.loadscopereorder = False  # keep the order chosen below
    return ModuleScheduling(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    order = {unit: rank for rank, unit in enumerate(SPREAD + LONGEST)}

    def rank(item: pytest.Item) -> int:
        unit = work_unit(item.nodeid)
        return order.get(unit, order.get(item.nodeid.split("::")[0], len(order)))

    items.sort(key=rank)


# Storage accounts the worker's Azurite serves for tests that need storage of their own (their
# hosts drain queues, they count every row): another Azurite process would cost ~1.2 s of CPU.
SPARE_ACCOUNTS: Final = tuple(f"spare{n:02d}" for n in range(64))


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    with running_azurite(accounts=SPARE_ACCOUNTS) as instance:
        yield instance


@pytest.fixture(scope="session")
def new_account(azurite: Azurite) -> Callable[[], StorageAccount]:
    """Hands out a storage account no other test of this worker has used."""
    names = iter(SPARE_ACCOUNTS)

    def take() -> StorageAccount:
        name = next(names, None)
        if name is None:
            raise RuntimeError("every spare storage account is taken: raise SPARE_ACCOUNTS")
        return azurite.account(name)

    return take


@pytest.fixture(scope="session")
async def storage(azurite: Azurite) -> AsyncIterator[Storage]:
    """Async Table and Queue clients on the session's Azurite (the product's own `Storage`)."""
    async with storage_on(azurite) as instance:
        yield instance
