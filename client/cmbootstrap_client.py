"""Reference device client: fetch a signed ccmsetup bundle, verify it, build ccmsetup's argv.

What `client/Invoke-CMBootstrap.ps1` does on Windows, in Python (stdlib, PyJWT, cryptography),
so an admin can check a deployment and the tests can drive the service end to end.

    # first setup: pin the service's current JWK Set (check it out of band!)
    CMBOOTSTRAP_TOKEN=<Entra access token> python client/cmbootstrap_client.py \\
        --api https://<app>.azurewebsites.net/api --device-id <GUID> \\
        --jwks pinned-jwks.json --trust-jwks-url
    # afterwards: verify against the pinned file only; --run starts ccmsetup (Windows)
    CMBOOTSTRAP_TOKEN=... python client/cmbootstrap_client.py --api ... --device-id ... \\
        --jwks pinned-jwks.json [--run --ccmsetup C:\\Windows\\ccmsetup\\ccmsetup.exe]

The token comes from the environment or `--token-file`, never the command line (process lists
are readable by other users). The argv is built from `ccmsetup.properties` and `.switches`,
each checked again here; the bundle's `commandLine` is informational and never executed.
Exit codes: 0 success (or ccmsetup's own code with --run), 2 bundle refused, 3 service error.
"""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import json
import os
import re
import secrets
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

BUNDLE_TYPE: Final = "cmboot-bundle+jwt"
BUNDLE_AUDIENCE: Final = "ccmsetup"
CLOCK_SKEW_SECONDS: Final = 300
ALLOWED_PROPERTIES: Final = (
    "CCMHOSTNAME",
    "SMSSiteCode",
    "SMSMP",
    "AADTENANTID",
    "AADTENANTNAME",
    "AADCLIENTAPPID",
    "AADRESOURCEURI",
)
_UNSAFE: Final = re.compile(r'["\x00-\x1f\x7f%^&|<>!]')
_TIMEOUT: Final = 30


class BundleRefused(Exception):
    """The bundle failed verification; `str()` says which check."""


class ServiceError(Exception):
    """The service could not be reached or answered with an error."""


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


# -- HTTP ------------------------------------------------------------------------------------
def _require_secure(url: str) -> None:
    parts = urllib.parse.urlsplit(url)
    host = parts.hostname or ""
    loopback = host == "localhost"
    with contextlib.suppress(ValueError):
        loopback = loopback or ipaddress.ip_address(host).is_loopback
    if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
        raise ServiceError(f"refusing {parts.scheme or 'a relative'} URL: https is required")


def _get(url: str, headers: Mapping[str, str]) -> bytes:
    _require_secure(url)
    request = urllib.request.Request(url, headers=dict(headers))  # noqa: S310 (scheme checked)
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT) as response:  # noqa: S310
            body: bytes = response.read()
            return body
    except urllib.error.HTTPError as error:
        detail = error.read(4096).decode("utf-8", "replace")
        raise ServiceError(f"{url.split('?')[0]} answered {error.code}: {detail}") from None
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        raise ServiceError(f"{url.split('?')[0]} not reachable: {error}") from None


def fetch_jwks(api: str) -> dict[str, Any]:
    document = json.loads(_get(api.rstrip("/") + "/jwks", {"Accept": "application/json"}))
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ServiceError("the service's /jwks is not a JWK Set")
    return document


def fetch_bundle(api: str, token: str, device_id: str, nonce: str) -> str:
    query = urllib.parse.urlencode({"deviceId": device_id, "nonce": nonce})
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/jose"}
    return _get(f"{api.rstrip('/')}/bundle?{query}", headers).decode("ascii")


# -- verification ----------------------------------------------------------------------------
def pinned_keys(jwks: Mapping[str, Any]) -> dict[str, RSAPublicKey]:
    """RSA keys of the pinned JWK Set by kid; other key types are ignored."""
    keys: dict[str, RSAPublicKey] = {}
    for entry in jwks.get("keys", []):
        if isinstance(entry, dict) and entry.get("kty") == "RSA" and entry.get("kid"):
            key = jwt.PyJWK({k: entry[k] for k in ("kty", "n", "e", "kid") if k in entry}).key
            if isinstance(key, RSAPublicKey):
                keys[entry["kid"]] = key
    return keys


def verify_bundle(
    jws: str, jwks: Mapping[str, Any], *, device_id: str, nonce: str
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
    key = pinned_keys(jwks).get(header.get("kid", ""))
    if key is None:
        raise BundleRefused("kid is not in the pinned JWK Set (refresh it with --trust-jwks-url)")
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
    if claims["sub"].lower() != device_id.lower():
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
def _read_token(token_file: Path | None) -> str:
    token = token_file.read_text().strip() if token_file else os.environ.get("CMBOOTSTRAP_TOKEN")
    if not token:
        raise ServiceError("no token: set CMBOOTSTRAP_TOKEN or pass --token-file")
    return token.strip()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--api", required=True, help="https://<app>.azurewebsites.net/api")
    parser.add_argument("--device-id", required=True, help="the device's Entra device id (GUID)")
    parser.add_argument("--jwks", required=True, type=Path, help="pinned JWK Set file")
    parser.add_argument(
        "--trust-jwks-url",
        action="store_true",
        help="fetch <api>/jwks and (re)write the pinned file first (first setup, rotation)",
    )
    parser.add_argument("--token-file", type=Path, help="file holding the Entra access token")
    parser.add_argument("--ccmsetup", default="ccmsetup.exe", help="path of ccmsetup.exe")
    parser.add_argument("--run", action="store_true", help="run ccmsetup (Windows only)")
    parser.add_argument("--json", action="store_true", help="print argv and claims as JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.trust_jwks_url:
            args.jwks.write_text(json.dumps(fetch_jwks(args.api), indent=2))
        jwks = json.loads(args.jwks.read_text())
        nonce = secrets.token_urlsafe(32)
        jws = fetch_bundle(args.api, _read_token(args.token_file), args.device_id, nonce)
        bundle = verify_bundle(jws, jwks, device_id=args.device_id, nonce=nonce)
        command = ccmsetup_argv(bundle, args.ccmsetup)
    except BundleRefused as error:
        print(f"bundle refused: {error}", file=sys.stderr)
        return 2
    except (ServiceError, OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 3
    if args.json:
        print(json.dumps({"argv": command, "kid": bundle.kid, "claims": bundle.claims}))
    else:
        print(subprocess.list2cmdline(command))
    if args.run:
        if os.name != "nt":
            print("error: --run needs Windows", file=sys.stderr)
            return 3
        return subprocess.run(command, check=False).returncode
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
