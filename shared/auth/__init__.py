"""Who is calling: Entra ID access tokens validated for this API, and the checks built on them.

    caller = await authenticate(req)   # 401 Unauthorized unless a valid access token
    require_client_app(caller)         # 403 unless azp/appid is AAD_CLIENT_APP_ID
    require_admin(caller)              # 403 unless a user's token whose roles hold ADMIN_ROLE

401 means the token is not valid; 403 a valid token that is not allowed here (DESIGN.md).
A key-endpoint outage is 503, never 401.
"""

from __future__ import annotations

import azure.functions as func

from shared.auth._clouds import v1_issuer
from shared.auth._keys import TenantKeyCache, parse_jwks
from shared.auth._validate import CLOCK_SKEW_SECONDS, MAX_TOKEN_BYTES, Caller, TokenValidator
from shared.errors import Forbidden
from shared.per_loop import PerLoop
from shared.settings import get_settings

__all__ = [
    "CLOCK_SKEW_SECONDS",
    "MAX_TOKEN_BYTES",
    "Caller",
    "TenantKeyCache",
    "TokenValidator",
    "authenticate",
    "default_validator",
    "is_admin",
    "parse_jwks",
    "require_admin",
    "require_client_app",
    "v1_issuer",
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
