"""`GET /api/bundle` and `GET /api/jwks` through the development host, with the loopback Entra
issuer and a private Azurite (the host runs every queue trigger, so it must not share the
session's queues with other tests)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devhost.azurite import StorageAccount
from devtools.fakes.entra import EntraIssuer, SigningKey
from shared.names import BLOCKED_DEVICES
from tests.bundles.helpers import BundleService, verify_with_jwks
from tests.bundles.windows_argv import split_windows_command_line
from tests.support.devhost import REPO_ROOT, DevHostProcess
from tests.support.keys import write_signing_key
from tests.support.settings import (
    CCM_HOSTNAME,
    CLIENT_APP_ID,
    RESOURCE_URI,
    SERVER_APP_ID,
    SITE_CODE,
    TENANT_ID,
    TENANT_NAME,
    product_env,
)
from tests.support.storage import storage_on

SOURCE = "C:\\CM Client\\"
MANAGEMENT_POINT = "https://mp.contoso.com"
EXPECTED_PROPERTIES = {
    "CCMHOSTNAME": CCM_HOSTNAME,
    "SMSSiteCode": SITE_CODE,
    "SMSMP": MANAGEMENT_POINT,
    "AADTENANTID": TENANT_ID,
    "AADTENANTNAME": TENANT_NAME,
    "AADCLIENTAPPID": CLIENT_APP_ID,
    "AADRESOURCEURI": RESOURCE_URI,
}
INVALID_TOKEN = 'Bearer error="invalid_token"'


@pytest.fixture(scope="module")
def module_issuer() -> Iterator[EntraIssuer]:
    """Its own issuer, with a next key published before the host first fetches the key set (as
    Entra publishes keys ahead of use): the rollover test switches to it."""
    with EntraIssuer() as issuer:
        issuer.publish_key()
        yield issuer


@pytest.fixture(scope="module")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "bundle-signing.pem"
    write_signing_key(path)
    return path


@pytest.fixture(scope="module")
async def service(
    private_account: StorageAccount, module_issuer: EntraIssuer, signing_key_file: Path
) -> AsyncIterator[BundleService]:
    env = product_env(
        private_account.connection_string,
        AAD_AUTHORITY_HOST=module_issuer.authority_host,
        BOOTSTRAP_AUTH="user",  # the user-token path; device proofs: tests/device_trust
        BUNDLE_SIGNING_KEY_FILE=str(signing_key_file),
        CCMSETUP_SOURCE=SOURCE,
        CCMSETUP_NO_CRL_CHECK="true",
        SMS_MP=MANAGEMENT_POINT,
        BUNDLE_TTL_MINUTES="45",
    )
    async with storage_on(private_account) as storage:
        with DevHostProcess(env) as host:
            async with httpx.AsyncClient(timeout=30) as http:
                yield BundleService(host=host, storage=storage, issuer=module_issuer, http=http)


def new_device() -> str:
    return str(uuid.uuid4())


# -- the happy path -----------------------------------------------------------------------------
@pytest.mark.parametrize("version", [1, 2])
async def test_valid_token_gets_a_bundle_that_verifies_with_the_jwks(
    service: BundleService, version: int
):
    device, oid = new_device(), str(uuid.uuid4())
    token = service.issuer.mint_access_token(version=version, oid=oid)

    before = int(time.time())
    response = await service.get_bundle(
        device.upper(), token, nonce="abc_DEF-123456", **{"X-Forwarded-For": "203.0.113.7:50123"}
    )

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/jose")
    assert response.headers["Cache-Control"] == "no-store"
    header = jwt.get_unverified_header(response.text)
    assert header == {"alg": "RS256", "typ": "cmboot-bundle+jwt", "kid": header["kid"]}
    claims = verify_with_jwks(response.text, await service.jwks())
    assert claims["iss"] == service.host.base_url
    assert claims["sub"] == device
    assert claims["tid"] == TENANT_ID
    assert claims["oid"] == oid
    assert claims["nonce"] == "abc_DEF-123456"
    assert before <= claims["iat"] == claims["nbf"] <= int(time.time())
    assert claims["exp"] == claims["iat"] + 45 * 60
    assert str(uuid.UUID(claims["jti"], version=4)) == claims["jti"]
    assert claims["ccmsetup"]["switches"] == ["/NoCrlCheck", f"/Source:{SOURCE}"]
    assert claims["ccmsetup"]["properties"] == EXPECTED_PROPERTIES
    argv = split_windows_command_line(claims["ccmsetup"]["commandLine"])
    assert argv == [
        "ccmsetup.exe",
        "/NoCrlCheck",
        f"/Source:{SOURCE}",
        *(f"{name}={value}" for name, value in EXPECTED_PROPERTIES.items()),
    ]

    [row] = await service.audit_rows(device)
    assert row["RowKey"] == claims["jti"]
    assert row["oid"] == oid
    assert row["auth"] == "user"
    assert "certThumbprint" not in row
    # The caller's own X-Forwarded-For (203.0.113.7) is not audited: the host's peer address is.
    assert row["clientIp"] == "127.0.0.1"
    assert row["issued"] == datetime.fromtimestamp(claims["iat"], UTC)
    assert row["expires"] - row["issued"] == timedelta(minutes=45)


async def test_jwks_publishes_rsa_keys_named_by_thumbprint(service: BundleService):
    jwks = await service.jwks()

    [key] = jwks["keys"]
    assert set(key) == {"kty", "use", "alg", "kid", "n", "e"}
    canonical = json.dumps({"e": key["e"], "kty": "RSA", "n": key["n"]}, separators=(",", ":"))
    digest = hashlib.sha256(canonical.encode()).digest()
    assert key["kid"] == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


async def test_signed_jwks_is_the_jwks_signed_by_its_current_key(service: BundleService):
    jwks = await service.jwks()
    response = await service.http.get(service.host.url("/api/jwks/signed"))

    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("application/jose")
    [key] = jwks["keys"]
    header = jwt.get_unverified_header(response.text)
    assert header == {"alg": "RS256", "typ": "cmboot-jwks+jwt", "kid": key["kid"]}
    claims = jwt.decode(response.text, jwt.PyJWK(key).key, algorithms=["RS256"])
    assert claims["keys"] == jwks["keys"]
    assert claims["iat"] <= time.time() < claims["exp"]


async def test_another_jwks_variant_is_404_problem_json(service: BundleService):
    response = await service.http.get(service.host.url("/api/jwks/unsigned"))

    assert response.status_code == 404
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert response.json()["status"] == 404


# -- 403: valid tokens that are not allowed -------------------------------------------------------
async def test_token_of_another_client_app_is_forbidden(service: BundleService):
    device = new_device()
    for version in (1, 2):
        token = service.issuer.mint_access_token(version=version, client_app_id=str(uuid.uuid4()))
        response = await service.get_bundle(device, token)
        assert response.status_code == 403
        assert response.headers["Content-Type"].startswith("application/problem+json")
    assert await service.audit_rows(device) == []


async def test_blocked_device_is_forbidden_and_not_audited(service: BundleService):
    device = new_device()
    blocked = await service.storage.table(BLOCKED_DEVICES)
    await blocked.create_entity(
        {"PartitionKey": TENANT_ID, "RowKey": device, "reason": "stolen", "by": "admin"}
    )

    response = await service.get_bundle(device, service.issuer.mint_access_token())

    assert response.status_code == 403
    assert "blocked" in response.json()["detail"]
    assert await service.audit_rows(device) == []


# -- 400 and the bare challenge -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("device_id", "nonce", "named"),
    [
        ("not-a-guid", "n0nce-abcdef", {"deviceId"}),
        ("0f0e0d0c-0b0a-4909-8807-060504030201", "short", {"nonce"}),
        ("0f0e0d0c-0b0a-4909-8807-060504030201", "x" * 129, {"nonce"}),
        ("0f0e0d0c-0b0a-4909-8807-060504030201", "has space!", {"nonce"}),
        ("", "", {"deviceId", "nonce"}),
    ],
)
async def test_bad_parameters_are_400_naming_them(
    service: BundleService, device_id: str, nonce: str, named: set[str]
):
    response = await service.get_bundle(device_id, service.issuer.mint_access_token(), nonce)

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/problem+json")
    assert {error["field"] for error in response.json()["errors"]} == named


async def test_no_authorization_header_gets_a_plain_bearer_challenge(service: BundleService):
    device = new_device()
    response = await service.get_bundle(device, None)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["status"] == 401
    assert await service.audit_rows(device) == []


# -- 401: the attack matrix -----------------------------------------------------------------------
def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def b64json(value: dict[str, Any]) -> str:
    return b64url(json.dumps(value).encode())


def forged(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    return f"{b64json(header)}.{b64json(claims)}.{b64url(signature)}"


def hs256_with_public_key(issuer: EntraIssuer) -> str:
    """The classic confusion attack: HMAC keyed with the RSA public key the JWKS publishes."""
    secret = issuer.current_key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.current_key.kid}
    signing_input = f"{b64json(header)}.{b64json(issuer.access_token_claims())}"
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(mac)}"


def with_attacker_key_in_header(
    issuer: EntraIssuer, parameter: str, *, real_kid: bool = False
) -> str:
    """Signed by a key the tenant never published, with a header saying where to find it;
    optionally naming the tenant's real kid so that only the signature can give it away."""
    attacker = SigningKey.generate()
    value: Any = {
        "jku": f"{issuer.authority_host}/attacker/keys",
        "x5u": f"{issuer.authority_host}/attacker/cert.pem",
        "jwk": attacker.public_jwk(),
    }[parameter]
    headers = {parameter: value, **({"kid": issuer.current_key.kid} if real_kid else {})}
    return issuer.mint_access_token(key=attacker, headers=headers)


def tampered(issuer: EntraIssuer) -> str:
    header, _, signature = issuer.mint_access_token().split(".")
    claims = issuer.access_token_claims(client_app_id=CLIENT_APP_ID, roles=["Bootstrap.Admin"])
    return f"{header}.{b64json(claims)}.{signature}"


def id_token(issuer: EntraIssuer) -> str:
    return issuer.mint_id_token()


def id_token_for_the_server(issuer: EntraIssuer) -> str:
    return issuer.mint_id_token(audience=SERVER_APP_ID)


def es256(issuer: EntraIssuer) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    headers = {"kid": issuer.current_key.kid}
    return jwt.encode(issuer.access_token_claims(), key, algorithm="ES256", headers=headers)


def rs384_with_the_real_key(issuer: EntraIssuer) -> str:
    key = issuer.current_key
    return jwt.encode(
        issuer.access_token_claims(), key.private_key, algorithm="RS384", headers={"kid": key.kid}
    )


NOW = int(time.time())
NOT_RS256 = "must be signed with RS256"
UNKNOWN_KEY = "not signed by a key of the tenant"
BAD_SIGNATURE = "signature does not verify"
WRONG_ISSUER = "issuer is not the tenant's"
# attack -> (token factory, what the 401's detail must say: each fails for its own reason)
ATTACKS: dict[str, tuple[Callable[[EntraIssuer], str], str]] = {
    "alg none": (
        lambda i: forged(
            {"alg": "none", "typ": "JWT", "kid": i.current_key.kid}, i.access_token_claims()
        ),
        NOT_RS256,
    ),
    "HS256 keyed with the public key": (hs256_with_public_key, NOT_RS256),
    "ES256 with the real kid": (es256, NOT_RS256),
    "RS384 with the real key": (rs384_with_the_real_key, NOT_RS256),
    "wrong aud": (lambda i: i.mint_access_token(audience=str(uuid.uuid4())), "(aud)"),
    "aud is the client app": (lambda i: i.mint_access_token(audience=CLIENT_APP_ID), "(aud)"),
    "wrong iss": (
        lambda i: i.mint_access_token(iss="https://login.evil.example/x/v2.0"),
        WRONG_ISSUER,
    ),
    "v1 token with v2 issuer": (
        lambda i: i.mint_access_token(version=1, iss=i.v2_issuer()),
        WRONG_ISSUER,
    ),
    "another tenant": (lambda i: i.mint_access_token(tenant_id=str(uuid.uuid4())), WRONG_ISSUER),
    "tid differs from iss": (lambda i: i.mint_access_token(tid=str(uuid.uuid4())), "(tid)"),
    "expired": (
        lambda i: i.mint_access_token(exp=NOW - 3600, iat=NOW - 7200, nbf=NOW - 7200),
        "expired",
    ),
    "nbf in the future": (lambda i: i.mint_access_token(nbf=NOW + 3600), "not valid yet"),
    "missing exp": (lambda i: i.mint_access_token(exp=None), "'exp'"),
    "missing oid": (lambda i: i.sign({**i.access_token_claims(), "oid": None}), "'oid'"),
    "no scope or role": (lambda i: i.mint_access_token(scp=None), "no scope or role"),
    "unknown kid": (lambda i: i.mint_access_token(headers={"kid": "no-such-kid"}), UNKNOWN_KEY),
    "jku header": (lambda i: with_attacker_key_in_header(i, "jku"), UNKNOWN_KEY),
    "x5u header": (lambda i: with_attacker_key_in_header(i, "x5u"), UNKNOWN_KEY),
    "embedded jwk header": (lambda i: with_attacker_key_in_header(i, "jwk"), UNKNOWN_KEY),
    "jku header, tenant's kid": (
        lambda i: with_attacker_key_in_header(i, "jku", real_kid=True),
        BAD_SIGNATURE,
    ),
    "embedded jwk, tenant's kid": (
        lambda i: with_attacker_key_in_header(i, "jwk", real_kid=True),
        BAD_SIGNATURE,
    ),
    "unknown crit": (
        lambda i: i.mint_access_token(headers={"crit": ["urn:x"], "urn:x": 1}),
        "critical header",
    ),
    "tampered payload": (tampered, BAD_SIGNATURE),
    "stripped signature": (lambda i: i.mint_access_token().rsplit(".", 1)[0] + ".", BAD_SIGNATURE),
    # 21 characters off leaves a base64url length no decoder accepts (20 would decode).
    "truncated": (lambda i: i.mint_access_token()[:-21], "not valid"),
    "garbage": (lambda i: "this-is-not-a-token", "not a well-formed JWS"),
    "key never published": (lambda i: i.mint_access_token(key=SigningKey.generate()), UNKNOWN_KEY),
    "ID token": (id_token, "(aud)"),
    "ID token for the server app": (id_token_for_the_server, "ID token"),
    "100 KB": (lambda i: i.mint_access_token() + "A" * 100_000, "too large"),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_bad_token_is_401_invalid_token_and_not_audited(service: BundleService, attack: str):
    device = new_device()
    make_token, reason = ATTACKS[attack]
    token = make_token(service.issuer)

    response = await service.get_bundle(device, token)

    if attack == "100 KB" and response.status_code == 431:
        return  # docs/contract.md: a token too large for the HTTP layer may get 431
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == INVALID_TOKEN
    assert response.headers["Content-Type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == 401
    assert reason in body["detail"]
    assert token not in response.text
    assert await service.audit_rows(device) == []


# -- key rollover ---------------------------------------------------------------------------------
async def test_rollover_to_a_key_published_in_advance_needs_no_new_fetch(service: BundleService):
    issuer = service.issuer
    ok = await service.get_bundle(new_device(), issuer.mint_access_token())
    assert ok.status_code == 200
    upcoming = next(k for k in issuer.published_keys() if k is not issuer.current_key)
    fetches_before = issuer.key_fetches

    issuer.rotate(to=upcoming, keep_old=False)
    response = await service.get_bundle(new_device(), issuer.mint_access_token())

    assert response.status_code == 200, response.text
    assert issuer.key_fetches == fetches_before


# -- the reference client -------------------------------------------------------------------------
def run_client(service: BundleService, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", ""), "CMBOOTSTRAP_TOKEN": token}
    return subprocess.run(
        [sys.executable, "client/cmbootstrap_client.py", *args, "--api", service.host.url("/api")],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_reference_client_pins_once_then_verifies_and_builds_argv(
    service: BundleService, tmp_path: Path
):
    device = new_device()
    pinned = tmp_path / "jwks.json"
    token = service.issuer.mint_access_token()
    install = ("bundle", "--auth", "user", "--device-id", device, "--jwks", str(pinned), "--json")

    first = run_client(service, token, "pin", "--out", str(pinned))
    run = run_client(service, token, *install)

    assert first.returncode == 0, first.stderr
    [key] = (await service.jwks())["keys"]
    assert f"{key['kid']}  current (signs)" in first.stdout
    assert run.returncode == 0, run.stderr
    output = json.loads(run.stdout)
    assert output["argv"] == [
        "ccmsetup.exe",
        "/NoCrlCheck",
        f"/Source:{SOURCE}",
        *(f"{name}={value}" for name, value in EXPECTED_PROPERTIES.items()),
    ]
    assert len(await service.audit_rows(device)) == 1
    assert token not in first.stdout + first.stderr + run.stdout + run.stderr


async def test_reference_client_keeps_its_pin_against_a_set_it_cannot_verify(
    service: BundleService, tmp_path: Path
):
    other = SigningKey.generate().public_jwk()
    pinned = tmp_path / "jwks.json"
    pinned.write_text(json.dumps({"keys": [other]}))
    before = pinned.read_bytes()

    result = run_client(
        service,
        service.issuer.mint_access_token(),
        "bundle",
        "--auth",
        "user",
        "--device-id",
        new_device(),
        "--jwks",
        str(pinned),
    )

    assert result.returncode == 2
    assert "key set not updated (signed by a key that is not pinned)" in result.stderr
    assert "kid is not in the pinned key set" in result.stderr
    assert pinned.read_bytes() == before


async def test_reference_client_without_a_pin_says_how_to_make_one(
    service: BundleService, tmp_path: Path
):
    result = run_client(
        service,
        service.issuer.mint_access_token(),
        "bundle",
        "--auth",
        "user",
        "--device-id",
        new_device(),
        "--jwks",
        str(tmp_path / "missing.json"),
    )

    assert result.returncode == 3
    assert "create it once with `pin`" in result.stderr
    assert not (tmp_path / "missing.json").exists()
