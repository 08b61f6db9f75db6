"""The tenant's JWK Set is read with PyJWT: only usable RSA signing keys of 2048 bits or more."""

from __future__ import annotations

import json

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.auth import parse_jwks


def _jwk(key: rsa.RSAPrivateKey | rsa.RSAPublicKey, **members: object) -> dict[str, object]:
    return {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key)), **members}


def test_only_usable_rsa_signing_keys_are_kept():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505 (refused)
    document = {
        "keys": [
            _jwk(key.public_key(), kid="good"),
            _jwk(key, kid="published-with-d"),
            _jwk(small.public_key(), kid="1024-bit"),
            _jwk(key.public_key(), kid="encryption", use="enc"),
            _jwk(key.public_key(), kid=7),
            {"kty": "RSA", "kid": "unreadable", "n": "!!!", "e": "AQAB"},
            {"kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA"},
            "not a key",
        ]
    }

    keys = parse_jwks(document)

    assert sorted(keys) == ["good", "published-with-d"]
    assert all(isinstance(k, rsa.RSAPublicKey) for k in keys.values())
    assert keys["published-with-d"].public_numbers() == key.public_key().public_numbers()
