"""Signed ccmsetup install bundles for Entra ID-authenticated devices (docs/contract.md,
"Bundle (JWS)").

request = BundleRequest.from_params(req.params)       # 400 naming the bad parameter
bundle = await issue_bundle(caller, request, issuer=..., ip=...)   # 403 if blocked
keys = await get_signing_keys(); keys.jwks()         # GET /api/jwks
jws = await signed_jwks()                            # GET /api/jwks/signed
"""

from shared.bundles._command import CcmsetupCommand, quote_windows_argument
from shared.bundles._issue import (
    BUNDLE_AUDIENCE,
    BUNDLE_TYPE,
    BundleRequest,
    IssuedBundle,
    bundle_issuer,
    client_ip,
    issue_bundle,
)
from shared.bundles._jwks import (
    JWKS_TYPE,
    SIGNED_JWKS_LIFETIME_SECONDS,
    SignedJwksCache,
    sign_jwks,
    signed_jwks,
)
from shared.bundles._signing import (
    DEVELOPMENT_KEY_PATH,
    KeyVaultKeys,
    PublicKey,
    SigningKey,
    SigningKeys,
    get_signing_keys,
    load_signing_keys,
    rfc7638_thumbprint,
    sign_compact_jws,
)

__all__ = [
    "BUNDLE_AUDIENCE",
    "BUNDLE_TYPE",
    "DEVELOPMENT_KEY_PATH",
    "JWKS_TYPE",
    "SIGNED_JWKS_LIFETIME_SECONDS",
    "BundleRequest",
    "CcmsetupCommand",
    "IssuedBundle",
    "KeyVaultKeys",
    "PublicKey",
    "SignedJwksCache",
    "SigningKey",
    "SigningKeys",
    "bundle_issuer",
    "client_ip",
    "get_signing_keys",
    "issue_bundle",
    "load_signing_keys",
    "quote_windows_argument",
    "rfc7638_thumbprint",
    "sign_compact_jws",
    "sign_jwks",
    "signed_jwks",
]
