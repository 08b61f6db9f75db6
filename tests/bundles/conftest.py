"""Fixtures of the bundle tests: the loopback Entra issuer (real HTTP, real RSA keys) and a
module's own storage account (its host runs every queue trigger, so it must not share the
session's queues)."""

from collections.abc import Callable

import pytest

from devhost.azurite import StorageAccount
from tests.support.issuer import entra_issuer, fresh_entra_issuer

__all__ = ["entra_issuer", "fresh_entra_issuer", "private_account"]


@pytest.fixture(scope="module")
def private_account(new_account: Callable[[], StorageAccount]) -> StorageAccount:
    return new_account()
