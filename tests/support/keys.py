"""Bundle-signing keys for tests: a fresh RSA key written where BUNDLE_SIGNING_KEY_FILE points."""

from __future__ import annotations

from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa


def write_signing_key(path: Path, bits: int = 2048) -> rsa.RSAPrivateKey:
    """A new RSA key, written to `path` as unencrypted PKCS#8 PEM (the form the app reads)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return key
