"""Issuing one bundle: input checks, the blocked-device check, the signed JWS, the audit row."""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final
from urllib.parse import urlsplit

from shared.auth import AuthenticatedDevice, is_blocked
from shared.batching import Coalescer
from shared.bundles._command import CcmsetupCommand
from shared.bundles._signing import get_signing_keys, sign_compact_jws
from shared.errors import BadRequest, Forbidden
from shared.ids import parse_guid
from shared.names import BUNDLE_ISSUANCE
from shared.per_loop import PerLoop
from shared.profiles import DEFAULT_PROFILE, Overrides, applied_profile
from shared.settings import Settings, get_settings, is_loopback_host
from shared.storage import get_storage, translate_errors

_log = logging.getLogger(__name__)

BUNDLE_AUDIENCE: Final = "ccmsetup"
BUNDLE_TYPE: Final = "cmboot-bundle+jwt"
_NONCE: Final = re.compile(r"[A-Za-z0-9_-]{8,128}")


@dataclass(frozen=True, slots=True)
class BundleRequest:
    device_id: str  # lower-case GUID
    nonce: str

    @classmethod
    def from_params(cls, params: Mapping[str, str]) -> BundleRequest:
        """Both parameters checked; a 400 names every one that is wrong."""
        device_id = parse_guid(params.get("deviceId"))
        nonce = params.get("nonce", "")
        errors: dict[str, str] = {}
        if device_id is None:
            errors["deviceId"] = "must be the device's GUID (8-4-4-4-12 hex digits)"
        if not _NONCE.fullmatch(nonce):
            errors["nonce"] = "must be 8 to 128 URL-safe characters (A-Z a-z 0-9 - _)"
        if errors:
            raise BadRequest("Invalid query parameter: " + ", ".join(errors), errors=errors)
        assert device_id is not None
        return cls(device_id=device_id, nonce=nonce)


@dataclass(frozen=True, slots=True)
class IssuedBundle:
    jws: str
    jti: str
    kid: str
    expires: datetime


def bundle_issuer(request_url: str, website_hostname: str | None) -> str:
    """The bundle's `iss`: the app's base URL.

    In Azure the platform's own host name (WEBSITE_HOSTNAME), which a caller cannot influence
    (the development host sets it to its own loopback address, served over http); without it
    the scheme and host of the request URL.
    """
    if website_hostname:
        host = urlsplit(f"//{website_hostname}").hostname
        return f"{'http' if is_loopback_host(host) else 'https'}://{website_hostname}"
    parts = urlsplit(request_url)
    return f"{parts.scheme}://{parts.netloc}"


def client_ip(forwarded_for: str | None) -> str | None:
    """The caller's address as the platform saw it: the LAST entry of X-Forwarded-For.

    App Service's front end appends the address of the connection it accepted (as `ip:port`)
    to whatever X-Forwarded-For the caller sent, so every earlier entry is the caller's own
    claim and only the last one can be trusted. An unreadable last entry gives None, never an
    earlier entry.
    """
    if not forwarded_for:
        return None
    last = forwarded_for.rsplit(",", 1)[-1].strip()
    if last.startswith("["):  # [IPv6]:port
        host = last[1:].split("]", 1)[0]
    elif last.count(":") == 1:  # IPv4:port
        host = last.split(":", 1)[0]
    else:  # IPv4, or IPv6 without a port
        host = last
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


async def issue_bundle(
    caller: AuthenticatedDevice, request: BundleRequest, *, issuer: str, ip: str | None
) -> IssuedBundle:
    """Sign a bundle for `request.device_id` and audit it; nothing is returned unaudited.

    A proven device was checked against BlockedDevices with its proof; with a user token alone
    the requested device is checked here.
    """
    if caller.device_id is None:
        await _ensure_not_blocked(caller.tenant_id, request.device_id)
    # The profile: one point read per proven member (device object id, user), never Graph.
    members = [caller.device_object_id, caller.user.object_id if caller.user else None]
    keys, applied = await asyncio.gather(
        get_signing_keys(), applied_profile(caller.tenant_id, members)
    )
    profile = applied.profile if applied else DEFAULT_PROFILE
    settings = get_settings()
    issued_at = int(time.time())
    expires_at = issued_at + settings.bundle_ttl_minutes * 60
    jti = str(uuid.uuid4())
    claims = {
        "iss": issuer,
        "aud": BUNDLE_AUDIENCE,
        "sub": request.device_id,
        "tid": caller.tenant_id,
        **({"oid": caller.user.object_id} if caller.user is not None else {}),
        "iat": issued_at,
        "nbf": issued_at,
        "exp": expires_at,
        "jti": jti,
        "nonce": request.nonce,
        "ccmsetup": _ccmsetup_claim(settings, applied.overrides if applied else None),
        "profile": profile,
    }
    jws = await sign_compact_jws(claims, keys.current, typ=BUNDLE_TYPE)
    bundle = IssuedBundle(
        jws=jws,
        jti=jti,
        kid=keys.current.public.kid,
        expires=datetime.fromtimestamp(expires_at, UTC),
    )
    issued = datetime.fromtimestamp(issued_at, UTC)
    await _audit(caller, request, bundle, issued=issued, ip=ip, profile=profile)
    _log.info(
        "bundle issued", extra={"deviceId": request.device_id, "jti": jti, "profile": profile}
    )
    return bundle


@functools.lru_cache(maxsize=256)
def _ccmsetup_claim(settings: Settings, overrides: Overrides | None) -> dict[str, object]:
    """The same for every bundle of these settings and profile values: built once per pair
    (read-only, only serialized; a tenant has tens of profiles, so 256 keeps them all)."""
    return CcmsetupCommand.from_settings(settings, overrides).as_claim()


async def _ensure_not_blocked(tenant_id: str, device_id: str) -> None:
    if await is_blocked(tenant_id, device_id):
        _log.warning("bundle refused: device blocked", extra={"deviceId": device_id})
        raise Forbidden("This device is blocked from fetching install bundles.")


async def _audit(
    caller: AuthenticatedDevice,
    request: BundleRequest,
    bundle: IssuedBundle,
    *,
    issued: datetime,
    ip: str | None,
    profile: str,
) -> None:
    entity: dict[str, Any] = {
        "PartitionKey": caller.tenant_id,
        "RowKey": bundle.jti,
        "sub": request.device_id,
        **caller.provenance(),
        "kid": bundle.kid,
        "issued": issued,
        "expires": bundle.expires,
        "clientIp": ip or "",
        "profile": profile,
    }
    if caller.user is not None:
        entity["clientAppId"] = caller.user.client_app_id
    await _ledger().record(caller.tenant_id, entity)


class _Ledger:
    """BundleIssuance writes of one event loop, group-committed per tenant (a table transaction
    needs one PartitionKey)."""

    MAX_INSERTS: Final = 100  # a table transaction's limit

    def __init__(self) -> None:
        self._inserts: dict[str, Coalescer[dict[str, Any], None]] = {}

    async def record(self, tenant_id: str, entity: dict[str, Any]) -> None:
        coalescer = self._inserts.get(tenant_id)
        if coalescer is None:
            coalescer = Coalescer(_insert_all, max_batch=self.MAX_INSERTS)
            self._inserts[tenant_id] = coalescer
        await coalescer.submit(entity)


async def _insert_all(entities: list[dict[str, Any]]) -> list[None]:
    """One atomic table transaction: every audit row of the batch is stored, or none is."""
    table = await get_storage().table(BUNDLE_ISSUANCE)
    async with translate_errors():
        await table.submit_transaction([("create", entity) for entity in entities])
    return [None] * len(entities)


_ledgers: PerLoop[_Ledger] = PerLoop(_Ledger)


def _ledger() -> _Ledger:
    return _ledgers.get()
