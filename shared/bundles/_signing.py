"""Bundle-signing keys: Azure Key Vault, a PEM file, or (Development only) a generated key.

`SigningKeys.current` signs bundles and the signed key set (`/api/jwks/signed`); `/api/jwks`
publishes it and, during a rotation, the second key (`BUNDLE_SIGNING_NEXT_KEY_ID` / `_FILE`),
which verifies but never signs. Rotation (README "Rotating the bundle-signing key"):
  1. put the new key in the NEXT setting; devices re-pin both from the set the old key signs;
  2. swap: the new key becomes BUNDLE_SIGNING_KEY_*, the old one moves to NEXT (now the previous
     key), so bundles it signed keep verifying until they expire (at most BUNDLE_TTL_MINUTES)
     and devices follow the set the new key signs;
  3. after that TTL, remove the NEXT setting.
`kid` is the RFC 7638 thumbprint of the public key, so it names the key itself, not a setting.

With Key Vault the private key never leaves the vault: one `sign` call per bundle (well inside
the vault's RSA-operation limits); the public key is read once with `get_key` and cached. The
key ids are versioned (Settings refuses a versionless one), so signature and published key
always match and a version the vault makes later never signs until an operator rotates.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from azure.core.exceptions import AzureError
from azure.keyvault.keys import KeyVaultKey, KeyVaultKeyIdentifier
from azure.keyvault.keys.aio import KeyClient
from azure.keyvault.keys.crypto import SignatureAlgorithm
from azure.keyvault.keys.crypto.aio import CryptographyClient
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from jwt.algorithms import RSAAlgorithm

from shared.b64url import b64url_encode
from shared.errors import ServiceUnavailable, SettingError
from shared.identity import app_credential
from shared.per_loop import PerLoop
from shared.settings import Settings, get_settings

_log = logging.getLogger(__name__)

DEVELOPMENT_KEY_PATH: Final = Path(__file__).resolve().parents[2] / ".keys" / "bundle-signing.pem"
MIN_RSA_BITS: Final = 2048

Signer = Callable[[bytes], Awaitable[bytes]]


@dataclass(frozen=True, slots=True)
class PublicKey:
    """A published bundle-signing key: the JWK devices pin, named by its RFC 7638 thumbprint."""

    key: rsa.RSAPublicKey
    # Every bundle's header and audit row name the key: computed once, not per bundle.
    kid: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kid", rfc7638_thumbprint(self.key))

    def jwk(self) -> dict[str, str]:
        members = rsa_jwk_members(self.key)
        return {"kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid, **members}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The current key: its public half and how to sign (RS256 over the JWS signing input)."""

    public: PublicKey
    sign: Signer


@dataclass(frozen=True, slots=True)
class SigningKeys:
    current: SigningKey
    next: PublicKey | None = None

    def jwks(self) -> dict[str, list[dict[str, str]]]:
        published = [self.current.public] + ([self.next] if self.next else [])
        return {"keys": [key.jwk() for key in published]}


async def sign_compact_jws(claims: Mapping[str, Any], key: SigningKey, *, typ: str) -> str:
    """The one JWS builder: RS256, `typ` as given, `kid` the key's RFC 7638 thumbprint; no
    `jku`/`x5u`/`x5c`, so a verifier takes the key from its own pinned set, never from us."""
    header = {"alg": "RS256", "typ": typ, "kid": key.public.kid}
    signing_input = f"{_b64json(header)}.{_b64json(claims)}"
    signature = await key.sign(signing_input.encode("ascii"))
    return f"{signing_input}.{b64url_encode(signature)}"


def _b64json(value: Mapping[str, Any]) -> str:
    return b64url_encode(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())


def rsa_jwk_members(key: rsa.RSAPublicKey) -> dict[str, str]:
    """`n` and `e` of the key's JWK (RFC 7518 section 6.3.1), as PyJWT exports them."""
    exported = RSAAlgorithm.to_jwk(key, as_dict=True)
    return {"n": str(exported["n"]), "e": str(exported["e"])}


def rfc7638_thumbprint(key: rsa.RSAPublicKey) -> str:
    """The key's RFC 7638 thumbprint: SHA-256 of its required members, sorted, no spaces."""
    members = {"kty": "RSA", **rsa_jwk_members(key)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64url_encode(hashlib.sha256(canonical).digest())


# -- PEM ---------------------------------------------------------------------------------------
def pem_signing_key(private_key: rsa.RSAPrivateKey) -> SigningKey:
    async def sign(signing_input: bytes) -> bytes:
        return private_key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())

    return SigningKey(public=PublicKey(private_key.public_key()), sign=sign)


def read_pem_private_key(path: Path, setting: str) -> rsa.RSAPrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError):
        raise SettingError(setting, "a readable, unencrypted PEM RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey) or key.key_size < MIN_RSA_BITS:
        raise SettingError(setting, f"an RSA private key of at least {MIN_RSA_BITS} bits")
    return key


def development_private_key(path: Path = DEVELOPMENT_KEY_PATH) -> rsa.RSAPrivateKey:
    """The Development key: generated once (0600, git-ignored folder), then reused."""
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        key = rsa.generate_private_key(public_exponent=65537, key_size=MIN_RSA_BITS)
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        # Write aside, then link into place: two processes starting together agree on one key.
        temporary = path.with_name(f".{path.name}.{os.getpid()}")
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(pem)
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
        temporary.unlink()
        _log.info("generated the Development bundle-signing key")
    return read_pem_private_key(path, "BUNDLE_SIGNING_KEY_FILE")


# -- Key Vault -------------------------------------------------------------------------------
# A vault that accepts connections but never answers must not hold a device's request past the
# App Service front end's 230 s: azure-core's defaults (300 s reads, 3 retries) would.
_VAULT_CLIENT_OPTIONS: Final[dict[str, Any]] = {
    "connection_timeout": 5,
    "read_timeout": 15,
    "retry_total": 3,
}


class KeyVaultKeys:
    """Key Vault access for one process: one credential and the signing client, closed together."""

    def __init__(self) -> None:
        self.credential = app_credential()
        self._clients: list[CryptographyClient] = []

    async def public_key(self, key_id: str, setting: str) -> tuple[KeyVaultKey, rsa.RSAPublicKey]:
        """(the key as read, pinned to its version; its public half), read once."""
        identifier = KeyVaultKeyIdentifier(key_id)
        try:
            # Used once, so closed at once: nothing would close it later, and its session leaks.
            async with KeyClient(
                identifier.vault_url, self.credential, **_VAULT_CLIENT_OPTIONS
            ) as client:
                vault_key = await client.get_key(identifier.name, identifier.version)
        except AzureError as error:
            _log.warning("Key Vault: reading a bundle-signing key failed: %s", _first_line(error))
            raise ServiceUnavailable("The bundle-signing key could not be read.") from error
        # JsonWebKey sets its fields dynamically (no annotations), hence getattr.
        kty, n, e = (getattr(vault_key.key, name, None) for name in ("kty", "n", "e"))
        if kty not in ("RSA", "RSA-HSM") or not n or not e or not vault_key.id:
            raise SettingError(setting, "a Key Vault RSA key")
        public = rsa.RSAPublicNumbers(int.from_bytes(e, "big"), int.from_bytes(n, "big"))
        return vault_key, public.public_key()

    async def signing_key(self, key_id: str) -> SigningKey:
        vault_key, public = await self.public_key(key_id, "BUNDLE_SIGNING_KEY_ID")
        # Given the key read above (not its id), the client needs no `get_key` of its own before
        # the first sign; it signs remotely, since it holds only the public half.
        crypto = CryptographyClient(vault_key, self.credential, **_VAULT_CLIENT_OPTIONS)
        self._clients.append(crypto)

        async def sign(signing_input: bytes) -> bytes:
            digest = hashlib.sha256(signing_input).digest()
            try:
                result = await crypto.sign(SignatureAlgorithm.rs256, digest)
            except AzureError as error:
                _log.warning("Key Vault: signing a bundle failed: %s", _first_line(error))
                raise ServiceUnavailable("The bundle could not be signed; retry later.") from error
            return bytes(result.signature)

        return SigningKey(public=PublicKey(public), sign=sign)

    async def close(self) -> None:
        for client in self._clients:
            await client.close()
        await self.credential.close()


def _first_line(error: AzureError) -> str:
    """What failed (status and code, or the connection error), without response bodies."""
    return str(error).partition("\n")[0]


# -- loading -----------------------------------------------------------------------------------
async def load_signing_keys(
    settings: Settings,
    *,
    vault: KeyVaultKeys | None = None,
    development_key_path: Path = DEVELOPMENT_KEY_PATH,
) -> SigningKeys:
    """Current and next keys as the settings say: Key Vault first, then PEM, then Development."""
    if not (settings.signing_key_id or settings.signing_next_key_id) or vault is not None:
        return await _load_signing_keys(settings, vault, development_key_path)
    owned = KeyVaultKeys()
    try:
        return await _load_signing_keys(settings, owned, development_key_path)
    except BaseException:
        # A failed load is retried with new clients: close these, or their sessions leak.
        await owned.close()
        raise


async def _load_signing_keys(
    settings: Settings, vault: KeyVaultKeys | None, development_key_path: Path
) -> SigningKeys:
    if settings.signing_key_id:
        assert vault is not None
        current = await vault.signing_key(settings.signing_key_id)
    elif settings.signing_key_file:
        current = pem_signing_key(
            read_pem_private_key(settings.signing_key_file, "BUNDLE_SIGNING_KEY_FILE")
        )
    elif settings.is_development:
        current = pem_signing_key(development_private_key(development_key_path))
    else:  # Settings.from_env refuses this outside Development; say so if it ever slips by.
        raise SettingError("BUNDLE_SIGNING_KEY_ID", "a Key Vault key id or a PEM key file")
    next_key: PublicKey | None = None
    if settings.signing_next_key_id:
        assert vault is not None
        _, public = await vault.public_key(
            settings.signing_next_key_id, "BUNDLE_SIGNING_NEXT_KEY_ID"
        )
        next_key = PublicKey(public)
    elif settings.signing_next_key_file:
        private = read_pem_private_key(
            settings.signing_next_key_file, "BUNDLE_SIGNING_NEXT_KEY_FILE"
        )
        next_key = PublicKey(private.public_key())
    if next_key is not None and next_key.kid == current.public.kid:
        next_key = None  # the same key twice is not a rotation
    return SigningKeys(current=current, next=next_key)


# One set per event loop: Key Vault's async clients belong to the loop that made them.
_loads: PerLoop[asyncio.Task[SigningKeys]] = PerLoop(
    lambda: asyncio.get_running_loop().create_task(load_signing_keys(get_settings()))
)


async def get_signing_keys() -> SigningKeys:
    """The process's signing keys, loaded once per loop (concurrent first callers share it)."""
    task = _loads.get()
    if task.done() and (task.cancelled() or task.exception() is not None):
        _loads.discard()  # a failed load (vault down) is retried, not cached
        task = _loads.get()
    return await asyncio.shield(task)
