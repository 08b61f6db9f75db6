"""The `Device-Proof` header (README "Device trust"): a DPoP-style JWS signed with the private key
of the device's Entra ID certificate, which travels in `x5c`.

Checks, in order, each a 401 (`InvalidDeviceProof`) when it fails:
1. at most 16 KiB; three base64url segments; a JSON header with `alg` RS256 or PS256 (an
   allow-list: `none`, HS256 and everything else are refused), `typ` `cmboot-device-proof+jwt`,
   no `crit` and no `b64` (RFC 7797 would change what is signed); `jku`, `x5u`, `jwk` and `kid`
   are ignored: no key is ever fetched or taken from anywhere but `x5c`;
2. `x5c` holds exactly one base64 DER certificate (no chain is followed), with an RSA key of at
   least 2048 bits whose subject CN is a GUID;
3. the signature verifies (PyJWT) with that certificate's public key;
4. the claims match the request: `deviceId` = the CN = the request's device id (when it names
   one), `htm` = method, `htu` = the request URL without query (same path; a host of the app's
   own; https, or http for a loopback host), `iat` within 300 s of now, a `jti`, `nonce` = the
   request's nonce (bundles), `ath` = base64url SHA-256 of the bearer token (when one is sent),
   `bodySha256` = base64url SHA-256 of the exact body bytes (reports).

This module does no I/O: single use of `jti` (`_replay`) and the device's registration in Entra
ID (`_device_registry`) are checked by `_device_auth` after it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from shared.b64url import b64url_decode, b64url_encode
from shared.errors import InvalidDeviceProof
from shared.ids import parse_guid
from shared.settings import is_loopback_host

PROOF_HEADER: Final = "Device-Proof"
PROOF_TYPE: Final = "cmboot-device-proof+jwt"
PROOF_ALGORITHMS: Final = ("RS256", "PS256")
MAX_PROOF_BYTES: Final = 16 * 1024
PROOF_MAX_SKEW_SECONDS: Final = 300
MIN_RSA_BITS: Final = 2048  # Entra ID enrolls RSA-2048 device keys; anything weaker is no proof
MAX_JTI_CHARS: Final = 256
_BASE64URL: Final = re.compile(r"[A-Za-z0-9_-]*")
_REFUSED_HEADERS: Final = ("crit", "b64")
_DEFAULT_PORTS: Final = {"https": 443, "http": 80}


@dataclass(frozen=True, slots=True)
class ProofRequest:
    """What a proof must match: the request as the service received it."""

    method: str
    url: str  # the full request URL; its query is not part of `htu`
    device_id: str | None = None  # the request's deviceId (bundle query), None where it has none
    nonce: str | None = None  # `/api/bundle`'s nonce
    body: bytes | None = None  # `/api/reports`' exact body bytes
    bearer_token: str | None = None  # the bearer token sent with the proof, if any


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    """A proof whose signature and claims hold; the device's registration is not checked yet."""

    device_id: str  # lower-case GUID
    jti: str
    issued_at: int
    thumbprint: str  # SHA-1 of the certificate (DER), 40 upper-case hex digits
    public_key_sha256: str  # base64 SHA-256 of the PKCS#1 RSAPublicKey DER (MS-DVRJ 2.3.3)


def body_digest(body: bytes) -> str:
    """`bodySha256`: base64url SHA-256 of the exact body bytes."""
    return b64url_encode(hashlib.sha256(body).digest())


def token_digest(token: str) -> str:
    """`ath`: base64url SHA-256 of the bearer token's ASCII (RFC 9449 §4.2)."""
    return b64url_encode(hashlib.sha256(token.encode("ascii", "replace")).digest())


class ProofVerifier:
    """Verifies a proof against a request, for an app served under `hostnames`."""

    def __init__(self, hostnames: Iterable[str], *, clock: Callable[[], float] = time.time) -> None:
        self._hosts = frozenset(_host_port(name) for name in hostnames if name)
        self._clock = clock

    def verify(self, proof: str, request: ProofRequest) -> VerifiedProof:
        if len(proof) > MAX_PROOF_BYTES:
            raise InvalidDeviceProof(f"The device proof is larger than {MAX_PROOF_BYTES} bytes.")
        header = _header(proof)
        certificate = _certificate(header)
        public_key = certificate.public_key()
        assert isinstance(public_key, rsa.RSAPublicKey)  # _certificate refuses any other key
        claims = _verified_claims(proof, public_key, header["alg"])
        device_id = self._check_claims(claims, request)
        if device_id != _subject_device_id(certificate):
            raise InvalidDeviceProof("The certificate's subject is not the proof's deviceId.")
        pkcs1 = public_key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
        return VerifiedProof(
            device_id=device_id,
            jti=claims["jti"],
            issued_at=claims["iat"],
            # SHA-1: the certificate thumbprint as Windows and Entra ID name it.
            thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
            public_key_sha256=base64.b64encode(hashlib.sha256(pkcs1).digest()).decode("ascii"),
        )

    def _check_claims(self, claims: dict[str, Any], request: ProofRequest) -> str:
        device_id = parse_guid(claims.get("deviceId"))
        if device_id is None:
            raise InvalidDeviceProof("The proof's deviceId is not a GUID.")
        if request.device_id is not None and device_id != request.device_id.lower():
            raise InvalidDeviceProof("The proof is for another device than the request names.")
        if claims.get("htm") != request.method.upper():
            raise InvalidDeviceProof("The proof's htm is not the request's method.")
        self._check_htu(claims.get("htu"), request.url)
        self._check_iat(claims.get("iat"))
        jti = claims.get("jti")
        if not isinstance(jti, str) or not 0 < len(jti) <= MAX_JTI_CHARS:
            raise InvalidDeviceProof(f"The proof's jti must be 1 to {MAX_JTI_CHARS} characters.")
        if request.nonce is not None and claims.get("nonce") != request.nonce:
            raise InvalidDeviceProof("The proof's nonce is not the request's nonce.")
        if request.bearer_token is not None and claims.get("ath") != token_digest(
            request.bearer_token
        ):
            raise InvalidDeviceProof("The proof's ath does not bind the bearer token sent.")
        if request.body is not None and claims.get("bodySha256") != body_digest(request.body):
            raise InvalidDeviceProof("The proof's bodySha256 is not the body's digest.")
        return device_id

    def _check_htu(self, htu: object, request_url: str) -> None:
        if not isinstance(htu, str) or len(htu) > 2048:
            raise InvalidDeviceProof("The proof has no htu.")
        try:
            target = urlsplit(htu)
            host = _host_port(target.netloc, scheme=target.scheme)
        except ValueError:
            raise InvalidDeviceProof("The proof's htu is not a URL.") from None
        if target.query or target.fragment or target.username or target.password:
            raise InvalidDeviceProof("The proof's htu must be the URL without query.")
        secure = target.scheme == "https" or (
            target.scheme == "http" and is_loopback_host(target.hostname)
        )
        if not secure:
            raise InvalidDeviceProof("The proof's htu must be https (http only on loopback).")
        if host not in self._hosts:
            raise InvalidDeviceProof("The proof's htu names a host that is not this app's.")
        if target.path != urlsplit(request_url).path:
            raise InvalidDeviceProof("The proof's htu is not the request's path.")

    def _check_iat(self, iat: object) -> None:
        if not isinstance(iat, int) or isinstance(iat, bool):
            raise InvalidDeviceProof("The proof's iat must be a whole number of seconds.")
        if abs(self._clock() - iat) > PROOF_MAX_SKEW_SECONDS:
            raise InvalidDeviceProof(
                f"The proof's iat is more than {PROOF_MAX_SKEW_SECONDS} s from the service clock."
            )


def _header(proof: str) -> dict[str, Any]:
    segments = proof.split(".")
    if len(segments) != 3 or not all(_BASE64URL.fullmatch(s) for s in segments):
        raise InvalidDeviceProof("The device proof is not a compact JWS.")
    try:
        header = json.loads(b64url_decode(segments[0]))
    except (ValueError, binascii.Error, RecursionError):
        raise InvalidDeviceProof("The device proof's header is not JSON.") from None
    if not isinstance(header, dict):
        raise InvalidDeviceProof("The device proof's header is not a JSON object.")
    if header.get("alg") not in PROOF_ALGORITHMS:
        raise InvalidDeviceProof("The device proof must be signed with RS256 or PS256.")
    if header.get("typ") != PROOF_TYPE:
        raise InvalidDeviceProof(f"The device proof's typ must be {PROOF_TYPE}.")
    for name in _REFUSED_HEADERS:
        if name in header:
            raise InvalidDeviceProof(f"The device proof's header may not carry '{name}'.")
    return header


def _certificate(header: dict[str, Any]) -> x509.Certificate:
    chain = header.get("x5c")
    if not isinstance(chain, list) or len(chain) != 1 or not isinstance(chain[0], str):
        raise InvalidDeviceProof("The device proof's x5c must hold exactly one certificate.")
    try:
        certificate = x509.load_der_x509_certificate(base64.b64decode(chain[0], validate=True))
        public_key = certificate.public_key()
    except (ValueError, binascii.Error):
        raise InvalidDeviceProof("The device proof's x5c is not a DER certificate.") from None
    if not isinstance(public_key, rsa.RSAPublicKey) or public_key.key_size < MIN_RSA_BITS:
        raise InvalidDeviceProof(f"The certificate must hold an RSA key of {MIN_RSA_BITS}+ bits.")
    return certificate


def _verified_claims(proof: str, key: rsa.RSAPublicKey, algorithm: str) -> dict[str, Any]:
    try:
        payload = jwt.PyJWS().decode(proof, key, algorithms=[algorithm])
    except jwt.PyJWTError:
        raise InvalidDeviceProof("The device proof's signature does not verify.") from None
    try:
        claims = json.loads(payload)
    except (ValueError, RecursionError):
        raise InvalidDeviceProof("The device proof's claims are not JSON.") from None
    if not isinstance(claims, dict):
        raise InvalidDeviceProof("The device proof's claims are not a JSON object.")
    return claims


def _subject_device_id(certificate: x509.Certificate) -> str | None:
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    if len(names) != 1 or not isinstance(names[0].value, str):
        return None
    return parse_guid(names[0].value)


def _host_port(netloc: str, *, scheme: str = "https") -> tuple[str, int]:
    """`host[:port]` as (lower-case host, port), the scheme's default port when none is given.
    Loopback names are one host (`localhost`, 127.0.0.1, ::1): a development host is all three."""
    parts = urlsplit(f"//{netloc}")
    host = (parts.hostname or "").lower()
    if not host:
        raise ValueError("no host")
    if is_loopback_host(host):
        host = "localhost"
    return host, parts.port or _DEFAULT_PORTS.get(scheme, 443)
