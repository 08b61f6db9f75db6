"""Reference device client: pin the signing keys, prove the device, fetch and verify a bundle.

What `client/Invoke-CMBootstrap.ps1` does on Windows, in Python (standard library, PyJWT,
cryptography; nothing of the server stack), so an admin can check a deployment and the tests can
drive the service end to end.

    # first setup, once, from an admin workstation: fetch the keys (unauthenticated!), compare
    # the printed thumbprints out of band, ship the file with the deployment
    python client/cmbootstrap_client.py pin --api https://<app>.azurewebsites.net/api \\
        --out pinned-jwks.json
    # install path (every run): follow a rotation through /api/jwks/signed (accepted only when a
    # pinned key signed it), then fetch a bundle with a device proof and verify it
    python client/cmbootstrap_client.py bundle --api ... --jwks pinned-jwks.json \\
        --auth device --cert device.pem --key device.key [--run --ccmsetup C:\\...\\ccmsetup.exe]

`--auth` is what the service's BOOTSTRAP_AUTH asks for: `device` (a `Device-Proof` signed with
the key of the device's Entra ID certificate; no user), `user` (an Entra access token) or
`device+user` (both; the proof's `ath` binds the token). The token comes from the environment
(CMBOOTSTRAP_TOKEN) or `--token-file`, never the command line (process lists are readable by
other users), and is never sent on to a redirect. The argv is built from `ccmsetup.properties`
and `.switches`, each checked again here; the bundle's `commandLine` is never executed.
Exit codes: 0 success (or ccmsetup's own code with --run), 2 bundle or keys refused, 3 service
or local error.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import ipaddress
import json
import os
import re
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey, RSAPublicKey
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

BUNDLE_TYPE: Final = "cmboot-bundle+jwt"
JWKS_TYPE: Final = "cmboot-jwks+jwt"
PROOF_TYPE: Final = "cmboot-device-proof+jwt"
BUNDLE_AUDIENCE: Final = "ccmsetup"
AUTH_MODES: Final = ("device", "user", "device+user")
PROOF_ALGORITHMS: Final = ("RS256", "PS256")
CLOCK_SKEW_SECONDS: Final = 300
ALLOWED_PROPERTIES: Final = (
    "CCMHOSTNAME",
    "SMSSiteCode",
    "SMSMP",
    "AADTENANTID",
    "AADTENANTNAME",
    "AADCLIENTAPPID",
    "AADRESOURCEURI",
    # What an install profile may add (the server's allow-list, README "Install profiles").
    "SMSCACHESIZE",
    "SMSCACHEFLAGS",
    "SMSCACHEDIR",
    "CCMINSTALLDIR",
    "CCMENABLELOGGING",
    "CCMLOGLEVEL",
    "CCMLOGMAXSIZE",
    "CCMLOGMAXHISTORY",
    "CCMDEBUGLOGGING",
    "CCMEVALINTERVAL",
    "CCMEVALHOUR",
    "CCMHTTPPORT",
    "CCMHTTPSPORT",
    "CCMALWAYSINF",
    "DISABLESITEOPT",
    "DISABLECACHEOPT",
    "NOTIFYONLY",
    "IGNOREAPPVVERSIONCHECK",
    "SITEREASSIGN",
    "DNSSUFFIX",
    "FSP",
    "SMSDIRECTORYLOOKUP",
    "SMSCONFIGSOURCE",
    "PROVISIONTS",
)
TOKEN_VARIABLE: Final = "CMBOOTSTRAP_TOKEN"  # noqa: S105 (a variable name, not a secret)
PFX_PASSWORD_VARIABLE: Final = "CMBOOTSTRAP_PFX_PASSWORD"  # noqa: S105 (the same)
_UNSAFE: Final = re.compile(r'["\x00-\x1f\x7f%^&|<>!]')
_TIMEOUT: Final = 30


class BundleRefused(Exception):
    """The bundle failed verification; `str()` says which check."""


class KeySetRefused(Exception):
    """A signed JWK Set was not accepted; the pinned set stays as it was. `str()` says why."""


class ServiceError(Exception):
    """The service could not be reached, answered with an error, or a local input is unusable."""


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def sha256_b64url(raw: bytes) -> str:
    return b64url(hashlib.sha256(raw).digest())


# -- HTTP ------------------------------------------------------------------------------------
class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A 3xx is an error: credentials (token, proof) must never follow a redirect elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER: Final = urllib.request.build_opener(_NoRedirects)


def _require_secure(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ServiceError(f"refusing {parts.scheme or 'a relative'} URL: https is required")


def http_request(
    method: str, url: str, headers: Mapping[str, str], body: bytes | None = None
) -> bytes:
    """The response body of a 2xx; `ServiceError` (with the problem's text) otherwise."""
    _require_secure(url)
    request = urllib.request.Request(  # noqa: S310 (scheme checked above)
        url, data=body, method=method, headers=dict(headers)
    )
    where = url.split("?")[0]
    try:
        with _OPENER.open(request, timeout=_TIMEOUT) as response:
            answer: bytes = response.read()
            return answer
    except urllib.error.HTTPError as error:
        detail = error.read(4096).decode("utf-8", "replace")
        raise ServiceError(f"{where} answered {error.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise ServiceError(f"{where} not reachable: {error}") from None


def request_target(url: str) -> str:
    """A proof's `htu`: the request URL without query or fragment."""
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))


# -- the device's identity -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceCredential:
    """The device's Entra ID certificate (subject CN=<deviceId>) and its RSA private key."""

    certificate: x509.Certificate
    private_key: RSAPrivateKey

    @classmethod
    def from_pem_files(cls, certificate: Path, key: Path) -> DeviceCredential:
        try:
            cert = x509.load_pem_x509_certificate(certificate.read_bytes())
            private = serialization.load_pem_private_key(key.read_bytes(), password=None)
        except (OSError, ValueError, TypeError) as error:
            raise ServiceError(f"device certificate or key unreadable: {error}") from None
        return cls._checked(cert, private)

    @classmethod
    def from_pfx(cls, path: Path, password: str | None) -> DeviceCredential:
        try:
            private, cert, _ = pkcs12.load_key_and_certificates(
                path.read_bytes(), password.encode() if password else None
            )
        except (OSError, ValueError, TypeError) as error:
            raise ServiceError(f"device PFX unreadable: {error}") from None
        if cert is None:
            raise ServiceError("the PFX holds no certificate")
        return cls._checked(cert, private)

    @classmethod
    def _checked(cls, cert: x509.Certificate, private: object) -> DeviceCredential:
        if not isinstance(private, RSAPrivateKey):
            raise ServiceError("the device key is not an RSA private key")
        public = cert.public_key()
        if not isinstance(public, RSAPublicKey) or public.public_numbers() != (
            private.public_key().public_numbers()
        ):
            raise ServiceError("the device key does not belong to the certificate")
        return cls(certificate=cert, private_key=private)

    @property
    def device_id(self) -> str:
        names = self.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        return str(names[0].value).lower() if names else ""

    def proof(
        self,
        method: str,
        url: str,
        *,
        nonce: str | None = None,
        token: str | None = None,
        body: bytes | None = None,
        algorithm: str = "RS256",
        now: int | None = None,
    ) -> str:
        """A `Device-Proof` for one request: `x5c` the certificate, claims bound to the request."""
        if algorithm not in PROOF_ALGORITHMS:
            raise ValueError(f"proof algorithm must be one of {PROOF_ALGORITHMS}")
        claims: dict[str, Any] = {
            "deviceId": self.device_id,
            "htm": method.upper(),
            "htu": request_target(url),
            "iat": int(time.time()) if now is None else now,
            "jti": str(uuid.uuid4()),
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if token is not None:
            claims["ath"] = sha256_b64url(token.encode("ascii"))
        if body is not None:
            claims["bodySha256"] = sha256_b64url(body)
        der = self.certificate.public_bytes(serialization.Encoding.DER)
        headers = {"typ": PROOF_TYPE, "x5c": [base64.b64encode(der).decode("ascii")]}
        return jwt.encode(claims, self.private_key, algorithm=algorithm, headers=headers)


@dataclass(frozen=True, slots=True)
class Credentials:
    """What one request presents, as `--auth` says: a device proof, a token, or both."""

    auth: str
    device: DeviceCredential | None = None
    token: str | None = None

    def __post_init__(self) -> None:
        if self.auth not in AUTH_MODES:
            raise ServiceError(f"--auth must be one of {', '.join(AUTH_MODES)}")
        if "device" in self.auth and self.device is None:
            raise ServiceError(f"--auth {self.auth} needs the device certificate (--cert/--key)")
        if "user" in self.auth and not self.token:
            raise ServiceError(
                f"--auth {self.auth} needs a token: set {TOKEN_VARIABLE} or pass --token-file"
            )

    def headers(
        self, method: str, url: str, *, nonce: str | None = None, body: bytes | None = None
    ) -> dict[str, str]:
        token = self.token if "user" in self.auth else None
        headers: dict[str, str] = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        if "device" in self.auth:
            assert self.device is not None
            headers["Device-Proof"] = self.device.proof(
                method, url, nonce=nonce, token=token, body=body
            )
        return headers


# -- pinned keys -----------------------------------------------------------------------------
def rfc7638_thumbprint(jwk: Mapping[str, Any]) -> str:
    """The RSA key's RFC 7638 thumbprint, computed here: a `kid` member is never trusted."""
    members = {"e": jwk["e"], "kty": "RSA", "n": jwk["n"]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return sha256_b64url(canonical.encode("ascii"))


def rsa_keys(jwks: Mapping[str, Any]) -> dict[str, RSAPublicKey]:
    """The RSA keys of a JWK Set by their computed thumbprint; other key types are ignored."""
    keys: dict[str, RSAPublicKey] = {}
    entries = jwks.get("keys")
    for entry in entries if isinstance(entries, list) else []:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            continue
        try:
            key = jwt.PyJWK({"kty": "RSA", "n": entry["n"], "e": entry["e"]}).key
        except (KeyError, jwt.PyJWTError):
            continue
        if isinstance(key, RSAPublicKey):
            keys[rfc7638_thumbprint(entry)] = key
    return keys


def read_pin(path: Path) -> dict[str, Any]:
    """The pinned set: `{"keys": [...], "iat": <the signed set's iat>}` (a JWK Set)."""
    try:
        pin = json.loads(path.read_text())
    except FileNotFoundError:
        raise ServiceError(
            f"no pinned key set at {path}: create it once with `pin` and compare the thumbprints"
        ) from None
    except (OSError, ValueError) as error:
        raise ServiceError(f"pinned key set {path} unreadable: {error}") from None
    if not isinstance(pin, dict) or not rsa_keys(pin):
        raise ServiceError(f"pinned key set {path} holds no RSA key")
    return pin


def write_pin(path: Path, pin: Mapping[str, Any]) -> None:
    """Write aside, then rename into place: an interrupted run never leaves half a pin."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    temporary.write_text(json.dumps(pin, indent=2) + "\n")
    os.replace(temporary, path)


def read_signed_jwks(jws: str, trusted: Mapping[str, RSAPublicKey], *, now: int) -> dict[str, Any]:
    """The JWK Set of a `cmboot-jwks+jwt` signed by one of `trusted` (thumbprint -> key).

    Checks typ, alg, header members, kid (a trusted key's thumbprint), signature, iat/exp and
    that every key's kid is its own thumbprint; returns `{"keys": [...], "iat": ...}`.
    """
    try:
        header = jwt.get_unverified_header(jws)
    except jwt.PyJWTError:
        raise KeySetRefused("not a compact JWS") from None
    if header.get("typ") != JWKS_TYPE or header.get("alg") != "RS256":
        raise KeySetRefused(f"not an RS256 {JWKS_TYPE}")
    if set(header) != {"alg", "typ", "kid"}:
        raise KeySetRefused("unexpected header parameters")
    key = trusted.get(str(header.get("kid")))
    if key is None:
        raise KeySetRefused("signed by a key that is not pinned")
    try:
        claims: dict[str, Any] = jwt.decode(
            jws,
            key,
            algorithms=["RS256"],
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["iat", "exp"], "verify_iat": False, "verify_exp": False},
        )
    except jwt.PyJWTError as error:
        raise KeySetRefused(f"signature or claims invalid: {error}") from None
    issued, expires = claims["iat"], claims["exp"]
    if not isinstance(issued, int) or not isinstance(expires, int):
        raise KeySetRefused("iat and exp must be integers")
    if expires < now - CLOCK_SKEW_SECONDS:
        raise KeySetRefused("the signed key set has expired")
    if issued > now + CLOCK_SKEW_SECONDS:
        raise KeySetRefused("the signed key set is dated in the future")
    entries = claims.get("keys")
    if not isinstance(entries, list) or not entries:
        raise KeySetRefused("no keys")
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("kty") != "RSA":
            raise KeySetRefused("a key that is not RSA")
        if entry.get("kid") != rfc7638_thumbprint(entry):
            raise KeySetRefused("a key whose kid is not its RFC 7638 thumbprint")
    keys = {"keys": entries}
    if header["kid"] not in rsa_keys(keys):
        raise KeySetRefused("the signing key is not in the set it signs")
    return {"keys": entries, "iat": issued}


def follow_rotation(pin: Mapping[str, Any], jws: str, *, now: int) -> dict[str, Any]:
    """The new pin when `jws` is a valid set signed by a pinned key and not older than the pin."""
    signed = read_signed_jwks(jws, rsa_keys(pin), now=now)
    pinned_at = pin.get("iat", 0)
    if isinstance(pinned_at, int) and signed["iat"] < pinned_at:
        if set(rsa_keys(signed)) == set(rsa_keys(pin)):
            return dict(pin)  # the same keys, signed earlier (by another instance): no change
        raise KeySetRefused("older than the pinned key set (a replayed set?)")
    return signed


def fetch_signed_jwks(api: str) -> str:
    headers = {"Accept": "application/jose"}
    return http_request("GET", api.rstrip("/") + "/jwks/signed", headers).decode("ascii")


def first_setup_pin(jws: str, *, now: int) -> dict[str, Any]:
    """An unauthenticated first fetch: the set must be consistent (signed by a key it holds);
    trust comes only from comparing the printed thumbprints out of band."""
    try:
        keys = rsa_keys(jwt.decode(jws, options={"verify_signature": False}))
    except jwt.PyJWTError:
        raise KeySetRefused("not a compact JWS") from None
    return read_signed_jwks(jws, keys, now=now)


# -- the bundle ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class VerifiedBundle:
    claims: dict[str, Any]
    kid: str

    @property
    def switches(self) -> list[str]:
        return list(self.claims["ccmsetup"]["switches"])

    @property
    def properties(self) -> dict[str, str]:
        return dict(self.claims["ccmsetup"]["properties"])


def fetch_bundle(api: str, credentials: Credentials, device_id: str, nonce: str) -> str:
    url = f"{api.rstrip('/')}/bundle"
    query = urllib.parse.urlencode({"deviceId": device_id, "nonce": nonce})
    headers = {"Accept": "application/jose", **credentials.headers("GET", url, nonce=nonce)}
    return http_request("GET", f"{url}?{query}", headers).decode("ascii")


def verify_bundle(
    jws: str, pin: Mapping[str, Any], *, device_id: str, nonce: str
) -> VerifiedBundle:
    """Check typ, alg, kid (pinned), signature, aud, sub, nonce, exp/nbf/iat and the claim shape."""
    try:
        header = jwt.get_unverified_header(jws)
    except jwt.PyJWTError:
        raise BundleRefused("not a compact JWS") from None
    if header.get("typ") != BUNDLE_TYPE:
        raise BundleRefused(f"typ is not {BUNDLE_TYPE}")
    if header.get("alg") != "RS256":
        raise BundleRefused("alg is not RS256")
    if set(header) != {"alg", "typ", "kid"}:
        raise BundleRefused("unexpected header parameters")
    key = rsa_keys(pin).get(str(header.get("kid")))
    if key is None:
        raise BundleRefused("kid is not in the pinned key set")
    try:
        claims: dict[str, Any] = jwt.decode(
            jws,
            key,
            algorithms=["RS256"],
            audience=BUNDLE_AUDIENCE,
            leeway=CLOCK_SKEW_SECONDS,
            options={"require": ["exp", "nbf", "iat", "sub", "nonce", "jti", "iss"]},
        )
    except jwt.PyJWTError as error:
        raise BundleRefused(f"signature or claims invalid: {error}") from None
    if str(claims["sub"]).lower() != device_id.lower():
        raise BundleRefused("sub is not this device")
    if not secrets.compare_digest(str(claims["nonce"]), nonce):
        raise BundleRefused("nonce does not match the one sent (replayed bundle?)")
    bundle = VerifiedBundle(claims=claims, kid=header["kid"])
    ccmsetup_argv(bundle, "ccmsetup.exe")  # refuse a malformed ccmsetup claim here already
    return bundle


def ccmsetup_argv(bundle: VerifiedBundle, ccmsetup: str) -> list[str]:
    """ccmsetup's argv from the typed switches and properties, each value checked again."""
    section = bundle.claims.get("ccmsetup")
    if not isinstance(section, dict):
        raise BundleRefused("no ccmsetup claim")
    switches, properties = section.get("switches"), section.get("properties")
    if not isinstance(switches, list) or not isinstance(properties, dict):
        raise BundleRefused("ccmsetup.switches / ccmsetup.properties malformed")
    argv = [ccmsetup]
    for switch in switches:
        if not isinstance(switch, str) or _UNSAFE.search(switch):
            raise BundleRefused("unsafe switch")
        if switch != "/NoCrlCheck" and not switch.startswith("/Source:"):
            raise BundleRefused(f"unknown switch {switch!r}")
        argv.append(switch)
    for name, value in properties.items():
        if name not in ALLOWED_PROPERTIES:
            raise BundleRefused(f"unknown property {name!r}")
        if not isinstance(value, str) or not value or _UNSAFE.search(value):
            raise BundleRefused(f"unsafe value for {name}")
        argv.append(f"{name}={value}")
    return argv


# -- command line ----------------------------------------------------------------------------
def add_credential_arguments(parser: argparse.ArgumentParser) -> None:
    """`--auth` and where its credentials come from (shared with the status reporter)."""
    parser.add_argument("--auth", choices=AUTH_MODES, default="device", help="BOOTSTRAP_AUTH")
    parser.add_argument("--cert", type=Path, help="device certificate (PEM)")
    parser.add_argument("--key", type=Path, help="device private key (PEM, unencrypted)")
    parser.add_argument(
        "--pfx",
        type=Path,
        help=f"device certificate and key (PFX; password: ${PFX_PASSWORD_VARIABLE})",
    )
    parser.add_argument(
        "--token-file", type=Path, help=f"Entra access token (default: ${TOKEN_VARIABLE})"
    )


def credentials_from(args: argparse.Namespace) -> Credentials:
    device: DeviceCredential | None = None
    if "device" in args.auth:
        if args.pfx:
            device = DeviceCredential.from_pfx(args.pfx, os.environ.get(PFX_PASSWORD_VARIABLE))
        elif args.cert and args.key:
            device = DeviceCredential.from_pem_files(args.cert, args.key)
    token: str | None = None
    if "user" in args.auth:
        raw = args.token_file.read_text() if args.token_file else os.environ.get(TOKEN_VARIABLE)
        token = (raw or "").strip() or None
    return Credentials(auth=args.auth, device=device, token=token)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    commands = parser.add_subparsers(dest="command", required=True)
    pin = commands.add_parser("pin", help="first setup: fetch and pin the keys, print thumbprints")
    pin.add_argument("--api", required=True, help="https://<app>.azurewebsites.net/api")
    pin.add_argument("--out", required=True, type=Path, help="the pinned key set file to write")
    bundle = commands.add_parser("bundle", help="install path: fetch and verify a bundle")
    bundle.add_argument("--api", required=True, help="https://<app>.azurewebsites.net/api")
    bundle.add_argument("--jwks", required=True, type=Path, help="the pinned key set file")
    bundle.add_argument("--device-id", help="default: the device certificate's CN")
    add_credential_arguments(bundle)
    bundle.add_argument("--ccmsetup", default="ccmsetup.exe", help="path of ccmsetup.exe")
    bundle.add_argument("--run", action="store_true", help="run ccmsetup (Windows only)")
    bundle.add_argument("--json", action="store_true", help="print argv and claims as JSON")
    return parser


def _pin(args: argparse.Namespace) -> int:
    jws = fetch_signed_jwks(args.api)
    pin = first_setup_pin(jws, now=int(time.time()))
    signer = jwt.get_unverified_header(jws)["kid"]
    write_pin(args.out, pin)
    print(f"pinned {len(pin['keys'])} key(s) into {args.out}; compare each RFC 7638 thumbprint")
    print("out of band (the kid of /api/jwks from another network, or BundleIssuance.kid):")
    for entry in pin["keys"]:
        role = "current (signs)" if entry["kid"] == signer else "published"
        print(f"  {rfc7638_thumbprint(entry)}  {role}")
    return 0


def _update_pin(args: argparse.Namespace, pin: dict[str, Any]) -> dict[str, Any]:
    """Follow a rotation when the service offers a newer set signed by a pinned key."""
    try:
        signed = follow_rotation(pin, fetch_signed_jwks(args.api), now=int(time.time()))
    except (KeySetRefused, ServiceError) as error:
        print(f"key set not updated ({error}); the pin is unchanged", file=sys.stderr)
        return pin
    if signed != pin:
        write_pin(args.jwks, signed)
    if set(rsa_keys(signed)) != set(rsa_keys(pin)):
        kids = ", ".join(rsa_keys(signed))
        print(f"pinned key set updated (rotation): {kids}", file=sys.stderr)
    return signed


def _bundle(args: argparse.Namespace) -> int:
    credentials = credentials_from(args)
    device_id = args.device_id or (credentials.device.device_id if credentials.device else "")
    device_id = device_id.lower()
    if not device_id:
        raise ServiceError("--device-id is needed when no device certificate is given")
    pin = _update_pin(args, read_pin(args.jwks))
    nonce = secrets.token_urlsafe(32)
    jws = fetch_bundle(args.api, credentials, device_id, nonce)
    bundle = verify_bundle(jws, pin, device_id=device_id, nonce=nonce)
    command = ccmsetup_argv(bundle, args.ccmsetup)
    if args.json:
        print(json.dumps({"argv": command, "kid": bundle.kid, "claims": bundle.claims}))
    else:
        print(subprocess.list2cmdline(command))
    if args.run:
        if os.name != "nt":
            raise ServiceError("--run needs Windows")
        return subprocess.run(command, check=False).returncode
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _pin(args) if args.command == "pin" else _bundle(args)
    except BundleRefused as error:
        print(f"bundle refused: {error}", file=sys.stderr)
        return 2
    except KeySetRefused as error:
        print(f"key set refused: {error}", file=sys.stderr)
        return 2
    except (ServiceError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    raise SystemExit(main())
