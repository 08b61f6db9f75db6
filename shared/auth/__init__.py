"""Who is calling: Entra ID access tokens validated for this API, device proofs, and the checks
built on them.

    caller = await authenticate(req)   # 401 Unauthorized unless a valid access token
    require_client_app(caller)         # 403 unless azp/appid is AAD_CLIENT_APP_ID
    require_admin(caller)              # 403 unless a user's token whose roles hold ADMIN_ROLE
    device = await authenticate_device(req, device_id=..., nonce=...)  # what BOOTSTRAP_AUTH asks

401 means the token or device proof is not valid; 403 a valid one that is not allowed here
(docs/contract.md). A key-endpoint or Graph outage is 503, never 401.
"""

from __future__ import annotations

import azure.functions as func

from shared.auth._blocked import is_blocked
from shared.auth._clouds import v1_issuer
from shared.auth._device_auth import (
    AuthenticatedDevice,
    DeviceAuthenticator,
    ProvenDevice,
    app_hostnames,
    close_device_authenticator,
    default_device_authenticator,
    lookup_device,
)
from shared.auth._device_proof import (
    MAX_PROOF_BYTES,
    PROOF_ALGORITHMS,
    PROOF_HEADER,
    PROOF_MAX_SKEW_SECONDS,
    PROOF_TYPE,
    ProofRequest,
    ProofVerifier,
    VerifiedProof,
    body_digest,
    token_digest,
)
from shared.auth._device_registry import (
    DEVICE_SELECT,
    DeviceDirectory,
    DeviceRecord,
    GraphDeviceDirectory,
    alternative_security_id_key,
    registered_key_matches,
)
from shared.auth._keys import TenantKeyCache, parse_jwks
from shared.auth._replay import ReplayGuard, TableReplayGuard, window_key
from shared.auth._validate import CLOCK_SKEW_SECONDS, MAX_TOKEN_BYTES, Caller, TokenValidator
from shared.errors import Forbidden
from shared.per_loop import PerLoop
from shared.settings import get_settings

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "DEVICE_SELECT",
    "MAX_PROOF_BYTES",
    "MAX_TOKEN_BYTES",
    "PROOF_ALGORITHMS",
    "PROOF_HEADER",
    "PROOF_MAX_SKEW_SECONDS",
    "PROOF_TYPE",
    "AuthenticatedDevice",
    "Caller",
    "DeviceAuthenticator",
    "DeviceDirectory",
    "DeviceRecord",
    "GraphDeviceDirectory",
    "ProofRequest",
    "ProofVerifier",
    "ProvenDevice",
    "ReplayGuard",
    "TableReplayGuard",
    "TenantKeyCache",
    "TokenValidator",
    "VerifiedProof",
    "alternative_security_id_key",
    "app_hostnames",
    "authenticate",
    "authenticate_device",
    "body_digest",
    "close_device_authenticator",
    "default_device_authenticator",
    "default_validator",
    "is_admin",
    "is_blocked",
    "lookup_device",
    "parse_jwks",
    "registered_key_matches",
    "require_admin",
    "require_client_app",
    "require_device_scope",
    "token_digest",
    "v1_issuer",
    "window_key",
]

# One validator (and key cache) per event loop, like the storage clients.
_validators: PerLoop[TokenValidator] = PerLoop(lambda: TokenValidator.from_settings(get_settings()))


def default_validator() -> TokenValidator:
    """The process's validator for the configured tenant, built on first use."""
    return _validators.get()


async def authenticate(req: func.HttpRequest) -> Caller:
    """The caller of `req`; raises `Unauthorized` (401) on a missing or invalid token."""
    return await default_validator().validate_header(req.headers.get("Authorization"))


def require_client_app(caller: Caller) -> None:
    """403 unless the token was issued to the device client app (`AAD_CLIENT_APP_ID`)."""
    if caller.client_app_id != get_settings().client_app_id:
        raise Forbidden("This API accepts tokens issued to the ConfigMgr client app only.")


def is_admin(caller: Caller) -> bool:
    """An admin is a person: a delegated token (`scp` present) whose `roles` hold `ADMIN_ROLE`.

    An app-only token can hold the role too (an app role assigned to a service principal), but
    then no signed-in admin stands behind the call: any holder of that app's secret would read
    every device, so admin views refuse it.
    """
    return caller.is_delegated and get_settings().admin_role in caller.roles


def require_admin(caller: Caller) -> None:
    """403 unless `is_admin(caller)`; the detail says which rule failed."""
    if is_admin(caller):
        return
    role = get_settings().admin_role
    if role not in caller.roles:
        raise Forbidden(f"This view requires the '{role}' app role.")
    raise Forbidden(
        f"This view requires a signed-in admin: an app-only token holding '{role}' is refused."
    )


def require_device_scope(caller: Caller) -> None:
    """403 unless the token carries the delegated scope of device endpoints (`DEVICE_SCOPE`)."""
    scope = get_settings().device_scope
    if scope not in caller.scopes:
        raise Forbidden(f"This API requires a user token with the '{scope}' scope.")


async def authenticate_device(
    req: func.HttpRequest,
    *,
    device_id: str | None = None,
    nonce: str | None = None,
    body: bytes | None = None,
) -> AuthenticatedDevice:
    """The caller of a device endpoint, proven as `BOOTSTRAP_AUTH` says.

    `device`: a `Device-Proof` (no token needed; a token sent anyway must be bound by `ath`);
    `user`: a bearer token issued to AAD_CLIENT_APP_ID carrying DEVICE_SCOPE; `device+user`:
    both, bound by `ath`. `device_id`, `nonce` and `body` are what the request says, which the
    proof must match (reports pass the body and no device id: a report about another device is
    the caller's 403 to give, not a bad proof).
    """
    settings = get_settings()
    mode = settings.bootstrap_auth
    user: Caller | None = None
    if mode in ("user", "device+user"):
        user = await authenticate(req)
        require_client_app(user)
        require_device_scope(user)
    if mode == "user":
        assert user is not None
        return AuthenticatedDevice(mode, user.tenant_id, None, None, user)
    proven = await default_device_authenticator().prove(
        req.headers.get(PROOF_HEADER),
        ProofRequest(
            method=req.method,
            url=req.url,
            device_id=device_id,
            nonce=nonce,
            body=body,
            bearer_token=_bearer_token(req.headers.get("Authorization")),
        ),
    )
    tenant_id = user.tenant_id if user is not None else settings.tenant_id
    return AuthenticatedDevice(
        mode,
        tenant_id,
        proven.device_id,
        proven.cert_thumbprint,
        user,
        device_object_id=proven.object_id or None,
    )


def _bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
