"""Fixtures of the bundle tests: the loopback Entra issuer (real HTTP, real RSA keys) and a
module's own Azurite (its host runs every queue trigger, so it must not share the session's)."""

from collections.abc import Iterator

import pytest

from devhost.azurite import Azurite, running_azurite
from tests.support.issuer import entra_issuer, fresh_entra_issuer

__all__ = ["entra_issuer", "fresh_entra_issuer", "private_azurite"]


@pytest.fixture(scope="module")
def private_azurite() -> Iterator[Azurite]:
    with running_azurite() as instance:
        yield instance
