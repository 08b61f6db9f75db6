"""Bundles signed by Azure Key Vault, end to end through the development host.

The app runs the real azure-keyvault-keys and azure-identity: it gets managed-identity tokens from
the loopback App Service endpoint and talks TLS to the loopback vault (`tests/fakes/keyvault.py`)
through `HTTPS_PROXY`. The vault holds the RSA private keys; the tests check what a device and an
operator see: bundles that verify with `/api/jwks` alone, the published keys, a 503 on an outage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Final

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devhost.azurite import StorageAccount
from devtools.fakes.entra import EntraIssuer
from devtools.fakes.identity import FakeManagedIdentity
from tests.bundles.helpers import BundleService, verify_with_jwks
from tests.fakes.keyvault import RESOURCE, FakeKeyVault
from tests.support.devhost import DevHostProcess
from tests.support.settings import product_env
from tests.support.storage import storage_on

CURRENT: Final = "bundle-signing"
NEXT: Final = "bundle-signing-next"
MANAGED_IDENTITY_TOKEN: Final = re.compile(r"\bmi\.[A-Za-z0-9_=-]{20,}\.[0-9a-f]{64}")


@dataclass
class VaultService(BundleService):
    vault: FakeKeyVault
    identity: FakeManagedIdentity
    current_key_id: str
    next_key_id: str


@pytest.fixture(scope="module")
def identity() -> Iterator[FakeManagedIdentity]:
    with FakeManagedIdentity() as endpoint:
        yield endpoint


@pytest.fixture(scope="module")
def vault(
    identity: FakeManagedIdentity, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FakeKeyVault]:
    with FakeKeyVault(identity, tmp_path_factory.mktemp("keyvault")) as fake:
        yield fake


@pytest.fixture(scope="module")
async def service(
    private_account: StorageAccount,
    entra_issuer: EntraIssuer,
    identity: FakeManagedIdentity,
    vault: FakeKeyVault,
) -> AsyncIterator[VaultService]:
    current_key_id = vault.create_key(CURRENT)
    next_key_id = vault.create_key(NEXT)
    env = product_env(
        private_account.connection_string,
        AAD_AUTHORITY_HOST=entra_issuer.authority_host,
        BOOTSTRAP_AUTH="user",
        BUNDLE_SIGNING_KEY_ID=current_key_id,  # versioned: the infra pins it explicitly
        BUNDLE_SIGNING_NEXT_KEY_ID=next_key_id,
        **identity.environment(),
        **vault.environment(),
    )
    async with storage_on(private_account) as storage:
        with DevHostProcess(env) as host:
            async with httpx.AsyncClient(timeout=60) as http:
                yield VaultService(
                    host=host,
                    storage=storage,
                    issuer=entra_issuer,
                    http=http,
                    vault=vault,
                    identity=identity,
                    current_key_id=current_key_id,
                    next_key_id=next_key_id,
                )


def thumbprint(key: rsa.RSAPublicKey) -> str:
    """RFC 7638 JWK thumbprint, computed here independently of the product."""
    numbers = key.public_numbers()

    def b64(value: int) -> str:
        raw = value.to_bytes((value.bit_length() + 7) // 8, "big")
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    members = {"e": b64(numbers.e), "kty": "RSA", "n": b64(numbers.n)}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()


async def test_a_bundle_signed_in_the_vault_verifies_with_the_jwks_alone(service: VaultService):
    device = str(uuid.uuid4())

    response = await service.get_bundle(device, service.issuer.mint_access_token())

    assert response.status_code == 200, response.text
    claims = verify_with_jwks(response.text, await service.jwks())
    assert claims["sub"] == device
    header = jwt.get_unverified_header(response.text)
    kid = thumbprint(service.vault.public_key(service.current_key_id))
    assert header == {"alg": "RS256", "typ": "cmboot-bundle+jwt", "kid": kid}
    [row] = await service.audit_rows(device)
    assert row["RowKey"] == claims["jti"]
    # The app authenticated to the vault with its managed identity, for the vault's resource.
    assert service.vault.challenges >= 1
    assert RESOURCE in service.identity.resources


async def test_every_bundle_is_signed_by_the_vault_and_the_key_is_read_once(
    service: VaultService,
):
    signed_before = service.vault.signatures[CURRENT]

    responses = [
        await service.get_bundle(str(uuid.uuid4()), service.issuer.mint_access_token())
        for _ in range(3)
    ]

    assert [r.status_code for r in responses] == [200, 200, 200]
    # One vault signature per bundle: the app never had the private key to sign by itself.
    assert service.vault.signatures[CURRENT] - signed_before == 3
    assert service.vault.signatures[NEXT] == 0  # the next key is published, never used
    # The public key was read once at start-up, not per bundle.
    assert service.vault.keys_read[CURRENT] == 1
    jwks = await service.jwks()
    assert all(set(key) == {"kty", "use", "alg", "kid", "n", "e"} for key in jwks["keys"])
    for response in responses:
        verify_with_jwks(response.text, jwks)


async def test_jwks_publishes_the_current_and_the_next_vault_key(service: VaultService):
    jwks = await service.jwks()

    kids = [key["kid"] for key in jwks["keys"]]
    assert kids == [
        thumbprint(service.vault.public_key(service.current_key_id)),
        thumbprint(service.vault.public_key(service.next_key_id)),
    ]
    published_next = jwt.PyJWK(jwks["keys"][1]).key
    assert published_next.public_numbers() == (
        service.vault.public_key(service.next_key_id).public_numbers()
    )
    assert service.vault.keys_read[NEXT] == 1


async def test_a_key_version_created_later_is_not_used(service: VaultService):
    """The setting names the version, so a newer one (the vault's rotation policy) never signs
    until an operator rotates: what the app signs with is what /api/jwks publishes."""
    service.vault.create_key(CURRENT)  # now the vault's latest version of the key

    response = await service.get_bundle(str(uuid.uuid4()), service.issuer.mint_access_token())

    assert response.status_code == 200, response.text
    kid = thumbprint(service.vault.public_key(service.current_key_id))
    assert jwt.get_unverified_header(response.text)["kid"] == kid
    verify_with_jwks(response.text, await service.jwks())


async def test_a_throttled_sign_is_retried_after_retry_after(service: VaultService):
    throttled_before = service.vault.throttled
    service.vault.throttle_next_signs(1)

    response = await service.get_bundle(str(uuid.uuid4()), service.issuer.mint_access_token())

    assert response.status_code == 200, response.text
    assert service.vault.throttled - throttled_before == 1
    verify_with_jwks(response.text, await service.jwks())


async def test_a_vault_outage_is_503_with_retry_after_and_nothing_audited(
    service: VaultService,
):
    device = str(uuid.uuid4())
    service.vault.unavailable = True
    try:
        response = await service.get_bundle(device, service.issuer.mint_access_token())
    finally:
        service.vault.unavailable = False

    assert response.status_code == 503, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert int(response.headers["Retry-After"]) > 0
    problem = response.json()
    assert problem["status"] == 503
    assert {"type", "title", "detail"} <= set(problem)
    assert service.vault.host not in response.text  # nothing internal in the answer
    assert await service.audit_rows(device) == []
    assert "Key Vault: signing a bundle failed" in service.host.output()
    # The vault is back: the same device gets its bundle, audited once.
    again = await service.get_bundle(device, service.issuer.mint_access_token())
    assert again.status_code == 200, again.text
    assert len(await service.audit_rows(device)) == 1


async def test_no_token_or_key_material_in_the_log(service: VaultService):
    log = service.host.output()
    assert service.identity.resources  # tokens were minted, so there was something to leak
    assert "PRIVATE KEY" not in log
    assert "Bearer " not in log
    assert not MANAGED_IDENTITY_TOKEN.search(log)
    assert "Unclosed" not in log  # every Key Vault client the app made is closed or in use


async def test_a_vault_down_at_start_is_503_until_it_is_back(
    private_account: StorageAccount,
    entra_issuer: EntraIssuer,
    identity: FakeManagedIdentity,
    vault: FakeKeyVault,
):
    """The keys are loaded on first use: a failed load is not cached, the next request retries."""
    name = f"down-at-start-{uuid.uuid4().hex[:8]}"
    key_id = vault.create_key(name)
    env = product_env(
        private_account.connection_string,
        AAD_AUTHORITY_HOST=entra_issuer.authority_host,
        BOOTSTRAP_AUTH="user",
        BUNDLE_SIGNING_KEY_ID=key_id,
        **identity.environment(),
        **vault.environment(),
    )
    with DevHostProcess(env) as host:
        async with httpx.AsyncClient(timeout=60) as http:
            vault.unavailable = True
            try:
                down = await http.get(host.url("/api/jwks"))
            finally:
                vault.unavailable = False
            up = await http.get(host.url("/api/jwks"))
        log = host.output()

    assert down.status_code == 503, down.text
    assert down.headers["Content-Type"].startswith("application/problem+json")
    assert int(down.headers["Retry-After"]) > 0
    assert up.status_code == 200, up.text
    assert [key["kid"] for key in up.json()["keys"]] == [thumbprint(vault.public_key(key_id))]
    assert vault.keys_read[name] == 1
    assert "Key Vault: reading a bundle-signing key failed" in log  # operators see why
    assert "Unclosed" not in log  # the failed attempt's clients were closed, not leaked
