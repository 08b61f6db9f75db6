"""Throw-away self-signed certificates, so loopback fakes and Azurite can serve https in tests.

A client trusts such a certificate the way it would a corporate CA: through `SSL_CERT_FILE`,
`REQUESTS_CA_BUNDLE` or an explicit `ca_file`. Valid for a day, for 127.0.0.1 and any names given.
"""

from __future__ import annotations

import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devtools.loopback import HOST


@dataclass(frozen=True, slots=True)
class CertificateFiles:
    """A PEM certificate (its own CA) and its PEM private key."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context


def self_signed_certificate(
    folder: Path, common_name: str = HOST, *, dns_names: Sequence[str] = ()
) -> CertificateFiles:
    """`{common_name}.pem` and `.key` in `folder`: an RSA certificate for HOST and `dns_names`."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    alternative_names: list[x509.GeneralName] = [x509.DNSName(dns) for dns in dns_names]
    alternative_names.append(x509.IPAddress(ipaddress.ip_address(HOST)))
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName(alternative_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    files = CertificateFiles(cert=folder / f"{common_name}.pem", key=folder / f"{common_name}.key")
    files.cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    files.key.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
