"""Who is calling: Entra ID access tokens validated for this API, device proofs, and the checks
built on them.

    caller = await authenticate(req)   # 401 Unauthorized unless a valid access token
    require_client_app(caller)         # 403 unless azp/appid is AAD_CLIENT_APP_ID
    require_admin(caller)              # 403 unless roles contains ADMIN_ROLE
    device = await authenticate_device(req, device_id=..., nonce=...)  # what BOOTSTRAP_AUTH asks

401 means the token or device proof is not valid; 403 a valid one that is not allowed here
(docs/contract.md). A key-endpoint or Graph outage is 503, never 401.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import azure.functions as func
from azure.identity.aio import DefaultAzureCredential

from shared.auth._blocked import is_blocked
from shared.auth._device_auth import DeviceAuthenticator, ProvenDevice
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
from shared.auth._replay import ReplayGuard, TableReplayGuard
from shared.auth._validate import (
    CLOCK_SKEW_SECONDS,
    MAX_TOKEN_BYTES,
    V1_ISSUER_FORMAT,
    Caller,
    TokenValidator,
)
from shared.errors import Forbidden
from shared.graph import GraphClient
from shared.per_loop import PerLoop
from shared.settings import BootstrapAuth, Settings, get_settings
from shared.storage import get_storage

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "DEVICE_SELECT",
    "MAX_PROOF_BYTES",
    "MAX_TOKEN_BYTES",
    "PROOF_ALGORITHMS",
    "PROOF_HEADER",
    "PROOF_MAX_SKEW_SECONDS",
    "PROOF_TYPE",
    "V1_ISSUER_FORMAT",
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
    "is_blocked",
    "parse_jwks",
    "registered_key_matches",
    "require_admin",
    "require_client_app",
    "require_device_scope",
    "token_digest",
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


def require_admin(caller: Caller) -> None:
    """403 unless the caller holds the admin app role (`ADMIN_ROLE`)."""
    role = get_settings().admin_role
    if role not in caller.roles:
        raise Forbidden(f"This view requires the '{role}' app role.")


def require_device_scope(caller: Caller) -> None:
    """403 unless the token carries the delegated scope of device endpoints (`DEVICE_SCOPE`)."""
    scope = get_settings().device_scope
    if scope not in caller.scopes:
        raise Forbidden(f"This API requires a user token with the '{scope}' scope.")


@dataclass(frozen=True, slots=True)
class AuthenticatedDevice:
    """Who called a device endpoint, as `BOOTSTRAP_AUTH` asked them to prove it."""

    auth: BootstrapAuth
    tenant_id: str
    device_id: str | None  # the proven device; None in `user` mode (nothing proves a device)
    cert_thumbprint: str | None  # the device certificate's SHA-1 thumbprint, with a proof
    user: Caller | None  # the user's token, in `user` and `device+user` modes

    def provenance(self) -> dict[str, str]:
        """How the caller was authenticated, as bundles and reports record it."""
        recorded: dict[str, str] = {"auth": self.auth}
        if self.cert_thumbprint:
            recorded["certThumbprint"] = self.cert_thumbprint
        if self.user is not None:
            recorded["oid"] = self.user.object_id
        return recorded


def app_hostnames(settings: Settings, website_hostname: str | None) -> tuple[str, ...]:
    """The hosts a proof's `htu` may name: WEBSITE_HOSTNAME (Azure sets it; the development host
    sets its own address) and PUBLIC_HOSTNAMES."""
    own = (website_hostname,) if website_hostname else ()
    return own + settings.public_hostnames


@dataclass(frozen=True, slots=True)
class _DeviceTrust:
    """This loop's authenticator and the Graph client and credential it reads devices with."""

    authenticator: DeviceAuthenticator
    graph: GraphClient
    credential: DefaultAzureCredential

    @classmethod
    def from_settings(cls) -> _DeviceTrust:
        settings = get_settings()
        # DefaultAzureCredential: the managed identity in Azure, as discovery reads Graph.
        credential = DefaultAzureCredential()
        graph = GraphClient(settings.graph_base_url, credential, max_retries=0)
        tenant_id = settings.tenant_id

        async def blocked(device_id: str) -> bool:
            return await is_blocked(tenant_id, device_id)

        authenticator = DeviceAuthenticator(
            verifier=ProofVerifier(app_hostnames(settings, os.environ.get("WEBSITE_HOSTNAME"))),
            replay=TableReplayGuard(get_storage()),
            directory=GraphDeviceDirectory(graph),
            trust_types=settings.device_trust_types,
            is_blocked=blocked,
        )
        return cls(authenticator, graph, credential)


# One per event loop: its Graph client, credential and storage belong to that loop.
_device_trust: PerLoop[_DeviceTrust] = PerLoop(_DeviceTrust.from_settings)


def default_device_authenticator() -> DeviceAuthenticator:
    return _device_trust.get().authenticator


async def close_device_authenticator() -> None:
    """Close this loop's Graph client and credential, if device proofs opened them."""
    trust = _device_trust.peek()
    if trust is None:
        return
    _device_trust.discard()
    await trust.graph.close()
    await trust.credential.close()


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
    return AuthenticatedDevice(mode, tenant_id, proven.device_id, proven.cert_thumbprint, user)


def _bearer_token(authorization: str | None) -> str | None:
    scheme, _, token = (authorization or "").strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
