"""The reference device client's own logic, directly and fast: device proofs as the contract
writes them (checked with PyJWT + cryptography, not with the client's code), the credentials each
BOOTSTRAP_AUTH mode sends, and following a key rotation through signed JWK Sets."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.serialization import pkcs12

from client.cmbootstrap_client import (
    Credentials,
    DeviceCredential,
    KeySetRefused,
    ServiceError,
    fetch_bundle,
    first_setup_pin,
    follow_rotation,
    read_pin,
    write_pin,
)
from devtools.devices import DeviceIdentity
from devtools.loopback import LoopbackServer
from shared.auth import ProofRequest, ProofVerifier, registered_key_matches
from shared.bundles import PublicKey, SigningKey, SigningKeys, sign_compact_jws, sign_jwks
from tests.support.devhost import REPO_ROOT

NOW = int(time.time())
API = "https://cmboot.contoso.example/api"


def b64url_sha256(raw: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(raw).digest()).rstrip(b"=").decode()


@pytest.fixture(scope="module")
def identity() -> DeviceIdentity:
    """An Entra-style device: CN=<deviceId>, issued by MS-Organization-Access, registered key."""
    return DeviceIdentity.generate()


@pytest.fixture(scope="module")
def device(identity: DeviceIdentity) -> DeviceCredential:
    return DeviceCredential(certificate=identity.certificate, private_key=identity.key)


def verified_proof(proof: str, device: DeviceCredential) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, claims) of a proof, checked the way the contract says a server checks it."""
    header = jwt.get_unverified_header(proof)
    [x5c] = header["x5c"]
    certificate = x509.load_der_x509_certificate(base64.b64decode(x5c, validate=True))
    claims = jwt.decode(proof, certificate.public_key(), algorithms=["RS256", "PS256"])  # type: ignore[arg-type]
    assert certificate == device.certificate
    return header, claims


# -- device proofs ---------------------------------------------------------------------------
def test_bundle_proof_carries_the_contract_header_and_claims(device: DeviceCredential):
    proof = device.proof("get", f"{API}/bundle?deviceId=x&nonce=n0nce-abc", nonce="n0nce-abc")

    header, claims = verified_proof(proof, device)

    assert header == {"alg": "RS256", "typ": "cmboot-device-proof+jwt", "x5c": header["x5c"]}
    assert set(claims) == {"deviceId", "htm", "htu", "iat", "jti", "nonce"}
    assert claims["deviceId"] == device.device_id
    assert (claims["htm"], claims["htu"]) == ("GET", f"{API}/bundle")
    assert abs(claims["iat"] - time.time()) < 5
    assert uuid.UUID(claims["jti"]).version == 4
    assert claims["nonce"] == "n0nce-abc"


@pytest.mark.parametrize("auth", ["device", "device+user"])
def test_the_service_accepts_the_clients_proofs_and_finds_the_registered_key(
    device: DeviceCredential, identity: DeviceIdentity, auth: str
):
    """The server's own verifier (shared.auth), on a bundle request and on a report."""
    credentials = Credentials(auth=auth, device=device, token="eyJ.token.sig")
    token = "eyJ.token.sig" if auth == "device+user" else None
    bundle_url = f"{API}/bundle?deviceId={identity.device_id}&nonce=n0nce-abcdef"
    body = b'{"reportId": "x"}'
    verifier = ProofVerifier(["cmboot.contoso.example"])

    bundle = verifier.verify(
        credentials.headers("GET", bundle_url, nonce="n0nce-abcdef")["Device-Proof"],
        ProofRequest(
            "GET", bundle_url, identity.device_id, nonce="n0nce-abcdef", bearer_token=token
        ),
    )
    report = verifier.verify(
        credentials.headers("POST", f"{API}/reports", body=body)["Device-Proof"],
        ProofRequest("POST", f"{API}/reports", body=body, bearer_token=token),
    )

    assert bundle.device_id == report.device_id == identity.device_id
    [registered] = identity.alternative_security_ids()
    assert registered_key_matches(registered["key"], bundle.thumbprint, bundle.public_key_sha256)


def test_each_proof_has_its_own_jti(device: DeviceCredential):
    proofs = [device.proof("GET", f"{API}/bundle", nonce="n0nce-abc") for _ in range(2)]
    assert len({verified_proof(p, device)[1]["jti"] for p in proofs}) == 2


def test_report_proof_binds_the_exact_body_and_the_token(device: DeviceCredential):
    body = json.dumps({"stage": "installed", "hostname": "PC-Ü1"}).encode()
    credentials = Credentials(auth="device+user", device=device, token="eyJ.token.sig")

    headers = credentials.headers("POST", f"{API}/reports", body=body)

    _, claims = verified_proof(headers["Device-Proof"], device)
    assert headers["Authorization"] == "Bearer eyJ.token.sig"
    assert claims["bodySha256"] == b64url_sha256(body)
    assert claims["ath"] == b64url_sha256(b"eyJ.token.sig")
    assert "nonce" not in claims


def test_ps256_proofs_verify_with_the_certificate(device: DeviceCredential):
    proof = device.proof("GET", f"{API}/bundle", nonce="n0nce-abc", algorithm="PS256")
    header, _ = verified_proof(proof, device)
    signing_input, _, signature = proof.rpartition(".")
    public = device.certificate.public_key()
    assert isinstance(public, rsa.RSAPublicKey)
    public.verify(
        base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)),
        signing_input.encode(),
        padding.PSS(padding.MGF1(hashes.SHA256()), padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )
    assert header["alg"] == "PS256"


@pytest.mark.parametrize(
    ("auth", "sends"),
    [("device", {"Device-Proof"}), ("user", {"Authorization"}), ("device+user", None)],
)
def test_each_auth_mode_sends_what_it_names(device: DeviceCredential, auth: str, sends: Any):
    credentials = Credentials(auth=auth, device=device, token="eyJ.token.sig")

    headers = credentials.headers("GET", f"{API}/bundle", nonce="n0nce-abc")

    assert set(headers) == (sends or {"Device-Proof", "Authorization"})
    if auth == "device":  # no token in the proof either: device mode runs with none
        assert "ath" not in verified_proof(headers["Device-Proof"], device)[1]


def test_a_mode_without_its_credential_is_refused_naming_what_is_missing(device: DeviceCredential):
    with pytest.raises(ServiceError, match="CMBOOTSTRAP_TOKEN"):
        Credentials(auth="device+user", device=device, token=None)
    with pytest.raises(ServiceError, match="--cert"):
        Credentials(auth="device", device=None, token="t")


def test_pem_and_pfx_files_load_and_a_foreign_key_is_refused(
    device: DeviceCredential, tmp_path: Path
):
    certificate, key = tmp_path / "device.pem", tmp_path / "device.key"
    certificate.write_bytes(device.certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(
        device.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    pfx = tmp_path / "device.pfx"
    pfx.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"device",
            device.private_key,
            device.certificate,
            None,
            serialization.BestAvailableEncryption(b"s3cret"),
        )
    )
    other = tmp_path / "other.key"
    other.write_bytes(
        rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )

    assert DeviceCredential.from_pem_files(certificate, key).device_id == device.device_id
    assert DeviceCredential.from_pfx(pfx, "s3cret").device_id == device.device_id
    with pytest.raises(ServiceError, match="does not belong"):
        DeviceCredential.from_pem_files(certificate, other)


# -- pinning and rotation --------------------------------------------------------------------
def signing_key() -> tuple[SigningKey, rsa.RSAPrivateKey]:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    async def sign(data: bytes) -> bytes:
        return private.sign(data, padding.PKCS1v15(), hashes.SHA256())

    return SigningKey(public=PublicKey(private.public_key()), sign=sign), private


@pytest.fixture(scope="module")
def keys() -> tuple[SigningKey, SigningKey, SigningKey]:
    """K1 (first), K2 (its successor), and an attacker's key."""
    return signing_key()[0], signing_key()[0], signing_key()[0]


def test_a_set_signed_by_a_pinned_key_is_followed_through_a_whole_rotation(keys: Any):
    first, second, _ = keys
    pin = first_setup_pin(_run(sign_jwks(SigningKeys(first), now=NOW - 30)), now=NOW)
    assert [k["kid"] for k in pin["keys"]] == [first.public.kid]

    announced = SigningKeys(first, next=second.public)  # step 1: next key published
    pin = follow_rotation(pin, _run(sign_jwks(announced, now=NOW - 20)), now=NOW)
    swapped = SigningKeys(second, next=first.public)  # step 2: next signs, old published
    pin = follow_rotation(pin, _run(sign_jwks(swapped, now=NOW - 10)), now=NOW)
    retired = SigningKeys(second)  # step 3: old retired
    pin = follow_rotation(pin, _run(sign_jwks(retired, now=NOW)), now=NOW)

    assert [k["kid"] for k in pin["keys"]] == [second.public.kid]
    assert pin["iat"] == NOW


def test_the_same_keys_signed_earlier_by_another_instance_change_nothing(keys: Any):
    first, second, _ = keys
    announced = SigningKeys(first, next=second.public)
    pin = first_setup_pin(_run(sign_jwks(announced, now=NOW)), now=NOW)

    assert follow_rotation(pin, _run(sign_jwks(announced, now=NOW - 3600)), now=NOW) == pin
    with pytest.raises(KeySetRefused, match="older than the pinned"):  # other keys: refused
        follow_rotation(pin, _run(sign_jwks(SigningKeys(first), now=NOW - 3600)), now=NOW)


def test_a_device_that_missed_the_announcement_cannot_follow_the_swap(keys: Any):
    first, second, _ = keys
    pin = first_setup_pin(_run(sign_jwks(SigningKeys(first), now=NOW - 30)), now=NOW)
    swapped = SigningKeys(second, next=first.public)
    with pytest.raises(KeySetRefused, match="not pinned"):
        follow_rotation(pin, _run(sign_jwks(swapped, now=NOW)), now=NOW)


def test_a_set_signed_by_an_unknown_key_is_refused_and_the_pin_file_is_unchanged(
    keys: Any, tmp_path: Path
):
    first, _, attacker = keys
    path = tmp_path / "pinned-jwks.json"
    write_pin(path, first_setup_pin(_run(sign_jwks(SigningKeys(first), now=NOW)), now=NOW))
    before = path.read_bytes()
    # The attacker's set even lists the pinned key beside its own: still not signed by it.
    forged = _run(sign_jwks(SigningKeys(attacker, next=first.public), now=NOW + 1))

    with pytest.raises(KeySetRefused, match="not pinned"):
        follow_rotation(read_pin(path), forged, now=NOW)
    assert path.read_bytes() == before


@pytest.mark.parametrize(
    ("case", "reason"),
    [
        ("older than the pin", "older than the pinned"),
        ("expired", "expired"),
        ("dated ahead", "future"),
        ("typ of a bundle", "not an RS256 cmboot-jwks"),
        ("kid not the key's thumbprint", "not its RFC 7638 thumbprint"),
        ("signer not in the set", "not in the set it signs"),
        ("jku in the header", "unexpected header"),
    ],
)
def test_bad_signed_sets_are_refused(keys: Any, case: str, reason: str):
    first, second, _ = keys
    pin = {"keys": SigningKeys(first).jwks()["keys"], "iat": NOW}
    lifetime = {"iat": NOW + 1, "exp": NOW + 86400}
    jwks = SigningKeys(first, next=second.public).jwks()
    typ = "cmboot-jwks+jwt"
    if case == "older than the pin":
        lifetime["iat"] = NOW - 60
    elif case == "expired":
        lifetime = {"iat": NOW - 90000, "exp": NOW - 3600}
        pin["iat"] = 0
    elif case == "dated ahead":
        lifetime = {"iat": NOW + 3600, "exp": NOW + 90000}
    elif case == "typ of a bundle":
        typ = "cmboot-bundle+jwt"
    elif case == "kid not the key's thumbprint":
        jwks["keys"][1]["kid"] = jwks["keys"][0]["kid"]
    elif case == "signer not in the set":
        jwks = SigningKeys(second).jwks()
    jws = _run(sign_compact_jws({**jwks, **lifetime}, first, typ=typ))
    if case == "jku in the header":
        jws = _with_header(jws, first, jku="https://evil.example/jwks")

    with pytest.raises(KeySetRefused, match=reason):
        follow_rotation(pin, jws, now=NOW)


def _with_header(jws: str, key: SigningKey, **extra: str) -> str:
    header = {**jwt.get_unverified_header(jws), **extra}
    encoded = base64.urlsafe_b64encode(json.dumps(header).encode()).rstrip(b"=").decode()
    payload = jws.split(".")[1]
    signature = _run(key.sign(f"{encoded}.{payload}".encode()))
    return f"{encoded}.{payload}." + base64.urlsafe_b64encode(signature).rstrip(b"=").decode()


def _run(awaitable: Any) -> Any:
    return asyncio.run(awaitable)


# -- HTTP ------------------------------------------------------------------------------------
class Redirecting(LoopbackServer):
    """Answers /api/bundle with a redirect to /elsewhere and records who came to /elsewhere."""

    def __init__(self) -> None:
        super().__init__()
        self.followed: list[dict[str, str]] = []

    def build_app(self) -> web.Application:
        async def bundle(request: web.Request) -> web.StreamResponse:
            raise web.HTTPFound(f"{self.base_url}/elsewhere")

        async def elsewhere(request: web.Request) -> web.StreamResponse:
            self.followed.append(dict(request.headers))
            return web.Response(text="eyJ.x.y")

        app = web.Application()
        app.router.add_get("/api/bundle", bundle)
        app.router.add_get("/elsewhere", elsewhere)
        return app


def test_credentials_never_follow_a_redirect(device: DeviceCredential):
    credentials = Credentials(auth="device+user", device=device, token="eyJ.token.sig")
    with Redirecting() as server:
        with pytest.raises(ServiceError, match="answered 302"):
            fetch_bundle(f"{server.base_url}/api", credentials, device.device_id, "n0nce-abc")
        assert server.followed == []


def test_the_device_tools_load_nothing_of_the_server_stack():
    probe = (
        "import sys, client.cmbootstrap_client, client.cmbootstrap_report\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'shared', 'azure', 'aiohttp', 'httpx', 'msgraph', 'devhost', 'blueprints', 'tests'}))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert loaded.stdout.strip() == "[]"
