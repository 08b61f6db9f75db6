"""The `Device-Proof` JWS checked directly (no host, no I/O): what verifies, each way it fails."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from typing import Any

import pytest

from devtools.devices import DROP, DeviceIdentity, new_rsa_key, unsigned_proof
from shared.auth import MAX_PROOF_BYTES, ProofRequest, ProofVerifier
from shared.errors import InvalidDeviceProof

HOST = "boot.contoso.com"
URL = f"https://{HOST}/api/bundle"
NONCE = "n0nce-abcdef"
NOW = 1_800_000_000


@pytest.fixture(scope="module")
def device() -> DeviceIdentity:
    return DeviceIdentity.generate()


@pytest.fixture(scope="module")
def other_device() -> DeviceIdentity:
    return DeviceIdentity.generate()


def verifier(now: float = NOW) -> ProofVerifier:
    return ProofVerifier([HOST, "127.0.0.1:7071"], clock=lambda: now)


def bundle_request(device: DeviceIdentity, **overrides: Any) -> ProofRequest:
    values: dict[str, Any] = {
        "method": "GET",
        "url": f"{URL}?deviceId={device.device_id}&nonce={NONCE}",
        "device_id": device.device_id,
        "nonce": NONCE,
    }
    return ProofRequest(**(values | overrides))


def bundle_proof(device: DeviceIdentity, **options: Any) -> str:
    options.setdefault("nonce", NONCE)
    options.setdefault("iat", NOW)
    return device.proof("GET", URL, **options)


def refused(proof: str, request: ProofRequest, now: float = NOW) -> str:
    with pytest.raises(InvalidDeviceProof) as caught:
        verifier(now).verify(proof, request)
    assert caught.value.status == 401
    assert caught.value.headers["WWW-Authenticate"] == 'Device-Proof error="invalid_proof"'
    return caught.value.detail


@pytest.mark.parametrize("alg", ["RS256", "PS256"])
def test_a_valid_proof_names_the_device_and_its_certificate(device: DeviceIdentity, alg: str):
    verified = verifier().verify(bundle_proof(device, alg=alg), bundle_request(device))

    assert verified.device_id == device.device_id
    assert verified.thumbprint == device.thumbprint
    assert verified.public_key_sha256 == device.public_key_sha256
    assert verified.issued_at == NOW


def test_report_proof_binds_the_exact_body_and_the_token(device: DeviceIdentity):
    body, token = b'{"stage":"installed"}', "eyJ.token.value"
    url = f"https://{HOST}/api/reports"
    proof = device.proof("POST", url, body=body, token=token, iat=NOW)
    request = ProofRequest("POST", url, body=body, bearer_token=token)

    assert verifier().verify(proof, request).device_id == device.device_id
    assert "bodySha256" in refused(
        proof, ProofRequest("POST", url, body=body + b" ", bearer_token=token)
    )
    assert "ath" in refused(proof, ProofRequest("POST", url, body=body, bearer_token=token + "x"))


@pytest.mark.parametrize("host", ["127.0.0.1:7071", "localhost:7071", "[::1]:7071"])
def test_loopback_host_may_use_http_with_its_port(device: DeviceIdentity, host: str):
    url = f"http://{host}/api/bundle"
    proof = device.proof("GET", url, nonce=NONCE, iat=NOW)
    request = bundle_request(device, url=url + "?nonce=" + NONCE)
    assert verifier().verify(proof, request).device_id == device.device_id
    other_port = device.proof("GET", "http://127.0.0.1:7072/api/bundle", nonce=NONCE, iat=NOW)
    assert "host" in refused(other_port, request)


@pytest.mark.parametrize(
    ("case", "options", "reason"),
    [
        ("wrong htm", {"claims": {"htm": "POST"}}, "htm"),
        ("another host", {"claims": {"htu": "https://evil.example/api/bundle"}}, "host"),
        ("another path", {"claims": {"htu": f"https://{HOST}/api/reports"}}, "path"),
        ("plain http", {"claims": {"htu": f"http://{HOST}/api/bundle"}}, "https"),
        ("query in htu", {"claims": {"htu": URL + "?nonce=x"}}, "without query"),
        ("no htu", {"claims": {"htu": DROP}}, "htu"),
        ("wrong nonce", {"nonce": "another-nonce"}, "nonce"),
        ("no nonce", {"claims": {"nonce": DROP}}, "nonce"),
        ("iat 6 minutes old", {"iat": NOW - 360}, "iat"),
        ("iat 6 minutes ahead", {"iat": NOW + 360}, "iat"),
        ("iat as text", {"claims": {"iat": str(NOW)}}, "iat"),
        ("no jti", {"claims": {"jti": DROP}}, "jti"),
        ("deviceId not a GUID", {"claims": {"deviceId": "PC01"}}, "GUID"),
        ("other typ", {"headers": {"typ": "JWT"}}, "typ"),
        ("no typ", {"headers": {"typ": DROP}}, "typ"),
        ("crit header", {"headers": {"crit": ["exp"]}}, "crit"),
        ("unencoded payload", {"headers": {"b64": False}}, "may not carry"),
        ("garbage x5c", {"headers": {"x5c": ["bm90IGEgY2VydGlmaWNhdGU="]}}, "DER"),
        ("x5c not base64", {"headers": {"x5c": ["***"]}}, "DER"),
        ("no x5c", {"headers": {"x5c": DROP}}, "exactly one"),
        ("empty x5c", {"headers": {"x5c": []}}, "exactly one"),
    ],
)
def test_bad_proofs_are_refused(
    device: DeviceIdentity, case: str, options: dict[str, Any], reason: str
):
    assert reason in refused(bundle_proof(device, **options), bundle_request(device)), case


def test_two_certificates_in_x5c_are_refused(device: DeviceIdentity, other_device: DeviceIdentity):
    proof = bundle_proof(device, headers={"x5c": device.x5c + other_device.x5c})
    assert "exactly one" in refused(proof, bundle_request(device))


def test_a_proof_for_another_device_than_the_request_names_is_refused(
    device: DeviceIdentity, other_device: DeviceIdentity
):
    assert "another device" in refused(bundle_proof(device), bundle_request(other_device))


def test_another_devices_certificate_does_not_verify_this_devices_signature(
    device: DeviceIdentity, other_device: DeviceIdentity
):
    proof = bundle_proof(device, headers={"x5c": other_device.x5c})
    assert "signature" in refused(proof, bundle_request(device))


def test_a_key_other_than_the_certificates_is_refused(device: DeviceIdentity):
    proof = bundle_proof(device, signing_key=new_rsa_key())
    assert "signature" in refused(proof, bundle_request(device))


def test_a_certificate_whose_cn_is_another_device_is_refused(device: DeviceIdentity):
    # Signed with the certificate's own key, so only the subject CN is wrong.
    stranger = DeviceIdentity.generate(common_name=str(uuid.uuid4()))
    proof = stranger.proof("GET", URL, nonce=NONCE, iat=NOW, claims={"deviceId": device.device_id})
    assert "subject" in refused(proof, bundle_request(device))


def test_alg_none_and_hs256_with_the_public_key_are_refused(device: DeviceIdentity):
    claims = device.proof_claims("GET", URL, nonce=NONCE, iat=NOW)
    header = {"typ": "cmboot-device-proof+jwt", "x5c": device.x5c}
    none = unsigned_proof(header | {"alg": "none"}, claims)
    assert "RS256 or PS256" in refused(none, bundle_request(device))

    unsigned = unsigned_proof(header | {"alg": "HS256"}, claims)
    signing_input = unsigned.rsplit(".", 1)[0].encode()
    tag = hmac.new(device.certificate_der, signing_input, hashlib.sha256).digest()
    hs256 = signing_input.decode() + "." + base64.urlsafe_b64encode(tag).rstrip(b"=").decode()
    assert "RS256 or PS256" in refused(hs256, bundle_request(device))

    es256 = unsigned_proof(header | {"alg": "ES256"}, claims, b"x" * 64)
    assert "RS256 or PS256" in refused(es256, bundle_request(device))


def test_an_oversized_proof_is_refused_before_parsing(device: DeviceIdentity):
    proof = bundle_proof(device, claims={"padding": "x" * MAX_PROOF_BYTES})
    assert "larger than" in refused(proof, bundle_request(device))


@pytest.mark.parametrize("text", ["", "a.b", "not-a-jws", "a.b.c.d", "!!.??.**", "e30.e30.e30"])
def test_malformed_proofs_are_refused(device: DeviceIdentity, text: str):
    refused(text, bundle_request(device))


def test_iat_at_the_edge_of_five_minutes_is_accepted(device: DeviceIdentity):
    for iat in (NOW - 300, NOW + 300):
        assert verifier().verify(bundle_proof(device, iat=iat), bundle_request(device))


def test_a_proof_without_ath_is_refused_when_a_token_is_sent(device: DeviceIdentity):
    token = "eyJ.a.b"
    assert "ath" in refused(bundle_proof(device), bundle_request(device, bearer_token=token))
    bound = bundle_proof(device, token=token)
    verified = verifier().verify(bound, bundle_request(device, bearer_token=token))
    assert verified.device_id == device.device_id


def test_the_clock_is_read_for_each_proof(device: DeviceIdentity):
    now = [float(NOW)]
    checker = ProofVerifier([HOST], clock=lambda: now[0])
    proof = bundle_proof(device)
    checker.verify(proof, bundle_request(device))
    now[0] += 301
    with pytest.raises(InvalidDeviceProof):
        checker.verify(proof, bundle_request(device))
