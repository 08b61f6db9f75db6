"""The Entra issuer fixtures: one per session, and a fresh one for tests that rotate or break it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from devtools.fakes.entra import EntraIssuer


@pytest.fixture(scope="session")
def entra_issuer() -> Iterator[EntraIssuer]:
    """One issuer for the session; tests that rotate keys or break it use `fresh_entra_issuer`."""
    with EntraIssuer() as issuer:
        yield issuer


@pytest.fixture
def fresh_entra_issuer() -> Iterator[EntraIssuer]:
    with EntraIssuer() as issuer:
        yield issuer
