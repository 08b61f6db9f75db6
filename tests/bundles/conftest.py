"""Fixtures of the bundle tests: the loopback Entra issuer (real HTTP, real RSA keys)."""

from tests.fakes.entra import entra_issuer, fresh_entra_issuer

__all__ = ["entra_issuer", "fresh_entra_issuer"]
