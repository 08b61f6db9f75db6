"""Entra ID device identities for tests, demo and bench: a real RSA key and a real X.509
certificate shaped like the one joining enrolls (issuer `CN=MS-Organization-Access`, subject
`CN=<deviceId>`), and device proofs (`Device-Proof` JWS) signed with it.

    device = DeviceIdentity.generate()
    graph.register_device(device.device_id, device.alternative_security_ids())
    proof = device.proof("GET", "http://127.0.0.1:7071/api/bundle", nonce="n0nce-abcdef")

`proof()` makes a valid proof by default; its keywords make each kind of bad one (another
algorithm, a stale iat, a wrong claim, a foreign signing key, two certificates in x5c, ...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared.auth import PROOF_TYPE, alternative_security_id_key, body_digest, token_digest
from shared.b64url import b64url_encode

ENTRA_DEVICE_ISSUER: Final = "MS-Organization-Access"
DROP: Final = object()  # a claim or header value that leaves the name out


def new_rsa_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def self_signed_certificate(
    key: rsa.RSAPrivateKey, common_name: str, *, issuer: str = ENTRA_DEVICE_ISSUER
) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """A joined device: its id, its certificate's private key and the certificate."""

    device_id: str
    key: rsa.RSAPrivateKey
    certificate: x509.Certificate

    @classmethod
    def generate(
        cls, device_id: str | None = None, *, common_name: str | None = None, bits: int = 2048
    ) -> DeviceIdentity:
        """A new device; `common_name` puts another subject CN in its certificate."""
        device_id = (device_id or str(uuid.uuid4())).lower()
        key = new_rsa_key(bits)
        return cls(device_id, key, self_signed_certificate(key, common_name or device_id))

    @property
    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)

    @property
    def x5c(self) -> list[str]:
        return [base64.b64encode(self.certificate_der).decode("ascii")]

    @property
    def thumbprint(self) -> str:
        """SHA-1 of the certificate, 40 upper-case hex digits (as Windows shows it)."""
        return hashlib.sha1(self.certificate_der).hexdigest().upper()  # noqa: S324

    @property
    def public_key_sha256(self) -> str:
        pkcs1 = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
        return base64.b64encode(hashlib.sha256(pkcs1).digest()).decode("ascii")

    def alternative_security_ids(self) -> list[dict[str, Any]]:
        """What Graph lists for this device's certificate (MS-DVRJ 2.3.3; type 2 is X509)."""
        key = alternative_security_id_key(self.thumbprint, self.public_key_sha256)
        return [{"type": 2, "identityProvider": None, "key": key}]

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def private_key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def write_pem(self, folder: Path) -> tuple[Path, Path]:
        """`<deviceId>.crt` and `<deviceId>.key` in `folder`; their paths."""
        folder.mkdir(parents=True, exist_ok=True)
        certificate, key = folder / f"{self.device_id}.crt", folder / f"{self.device_id}.key"
        certificate.write_bytes(self.certificate_pem())
        key.write_bytes(self.private_key_pem())
        return certificate, key

    def proof_claims(
        self,
        method: str,
        url: str,
        *,
        nonce: str | None = None,
        body: bytes | None = None,
        token: str | None = None,
        iat: int | None = None,
    ) -> dict[str, Any]:
        """The claims of a valid proof for this request (`url` without query)."""
        claims: dict[str, Any] = {
            "deviceId": self.device_id,
            "htm": method,
            "htu": url.split("?", 1)[0],
            "iat": int(time.time()) if iat is None else iat,
            "jti": str(uuid.uuid4()),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if body is not None:
            claims["bodySha256"] = body_digest(body)
        if token is not None:
            claims["ath"] = token_digest(token)
        return claims

    def proof(
        self,
        method: str,
        url: str,
        *,
        nonce: str | None = None,
        body: bytes | None = None,
        token: str | None = None,
        iat: int | None = None,
        alg: str = "RS256",
        claims: Mapping[str, Any] | None = None,
        headers: Mapping[str, Any] | None = None,
        signing_key: rsa.RSAPrivateKey | None = None,
    ) -> str:
        """A `Device-Proof` for `method url`; `claims` and `headers` override (DROP removes),
        `signing_key` signs with another key than the certificate's."""
        payload = _overridden(
            self.proof_claims(method, url, nonce=nonce, body=body, token=token, iat=iat), claims
        )
        header = _overridden({"alg": alg, "typ": PROOF_TYPE, "x5c": self.x5c}, headers)
        return jwt.encode(
            payload, signing_key or self.key, algorithm=alg, headers=header, sort_headers=False
        )


def unsigned_proof(
    header: Mapping[str, Any], claims: Mapping[str, Any], signature: bytes = b""
) -> str:
    """A compact JWS built by hand (for `alg` none and other forms no library will sign)."""
    parts = [b64url_encode(json.dumps(part).encode()) for part in (header, claims)]
    return ".".join([*parts, b64url_encode(signature)])


def _overridden(values: dict[str, Any], overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    for name, value in (overrides or {}).items():
        if value is DROP:
            values.pop(name, None)
        else:
            values[name] = value
    return values
