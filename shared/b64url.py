"""Base64url without padding (RFC 7515 §2), as JWS, JWK and our continuation tokens use it."""

from __future__ import annotations

import base64


def b64url_encode(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Raises `ValueError` (binascii.Error is one) when `text` is not base64url."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
