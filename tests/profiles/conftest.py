"""The discovery fixtures (loopback managed identity, a fresh tenant) for profile tests."""

from tests.discovery.conftest import identity, managed_identity_env, tenant

__all__ = ["identity", "managed_identity_env", "tenant"]
