"""Fixtures of the device-trust tests: the loopback managed identity and a Graph with devices."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.fakes.graph import FakeGraph
from devtools.fakes.identity import FakeManagedIdentity
from tests.support.issuer import entra_issuer

__all__ = ["entra_issuer"]


@pytest.fixture(scope="module")
def identity() -> Iterator[FakeManagedIdentity]:
    with FakeManagedIdentity() as server:
        yield server


@pytest.fixture(scope="module")
def graph(identity: FakeManagedIdentity) -> Iterator[FakeGraph]:
    with FakeGraph(identity) as server:
        yield server


@pytest.fixture
def managed_identity_env(
    identity: FakeManagedIdentity, monkeypatch: pytest.MonkeyPatch
) -> FakeManagedIdentity:
    """The App Service managed-identity variables, as Azure sets them for the worker."""
    for name, value in identity.environment().items():
        monkeypatch.setenv(name, value)
    return identity
