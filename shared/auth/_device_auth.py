"""Proving a device: the proof itself (`_device_proof`), its single use (`_replay`), then the
device's record in Entra ID (`_device_registry`) and `BlockedDevices`.

401 (`InvalidDeviceProof`): no proof, a proof that does not verify or match the request, a
replayed `jti`, a device Entra ID does not know, a certificate not registered for it.
403: the device is disabled, its `trustType` is not accepted, or it is blocked.
503 + Retry-After: Graph cannot be reached. Every refusal is logged with its reason only (never
the proof, a token or a certificate).

The `jti` is spent after the signature and claims hold and before Graph is asked, so a replay
costs no Graph call, and no one but the key holder can spend a device's `jti`.

The app's authenticator is built once per event loop from the settings (`WEBSITE_HOSTNAME`,
`PUBLIC_HOSTNAMES`, `GRAPH_BASE_URL`, `DEVICE_TRUST_TYPES`); `AuthenticatedDevice` is what the
device endpoints get back and record (`provenance()`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final

from azure.core.credentials_async import AsyncTokenCredential

from shared.auth._blocked import is_blocked
from shared.auth._device_proof import ProofRequest, ProofVerifier
from shared.auth._device_registry import DeviceDirectory, DeviceRecord, GraphDeviceDirectory
from shared.auth._replay import ReplayGuard, TableReplayGuard
from shared.auth._validate import Caller
from shared.errors import Forbidden, InvalidDeviceProof, ProblemError, ServiceUnavailable
from shared.graph import GraphClient, GraphError
from shared.identity import app_credential
from shared.per_loop import PerLoop
from shared.settings import BootstrapAuth, Settings, get_settings
from shared.storage import get_storage

GRAPH_RETRY_AFTER_SECONDS: Final = 10
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProvenDevice:
    """A device that proved it holds the key of a certificate Entra ID registered for it."""

    device_id: str  # lower-case GUID
    cert_thumbprint: str  # SHA-1, 40 upper-case hex digits
    trust_type: str
    # Graph's `device.id`, not the deviceId: what group memberships (AadGroupMembers) name.
    object_id: str = ""


class DeviceAuthenticator:
    """Everything that proves a device, each part injectable (clock, Graph, storage)."""

    def __init__(
        self,
        *,
        verifier: ProofVerifier,
        replay: ReplayGuard,
        directory: DeviceDirectory,
        trust_types: Collection[str],
        is_blocked: Callable[[str], Awaitable[bool]],
    ) -> None:
        self._verifier = verifier
        self._replay = replay
        self._directory = directory
        self._trust_types = frozenset(trust_types)
        self._is_blocked = is_blocked

    async def prove(self, proof: str | None, request: ProofRequest) -> ProvenDevice:
        try:
            return await self._prove(proof, request)
        except ProblemError as refused:
            # The reason and the device the request names; never the proof or a token.
            extra = {"reason": refused.detail, "status": refused.status}
            _log.info("device proof refused", extra=extra | {"deviceId": request.device_id})
            raise

    async def _prove(self, proof: str | None, request: ProofRequest) -> ProvenDevice:
        if not proof or not proof.strip():
            raise InvalidDeviceProof("A Device-Proof header is required.")
        verified = self._verifier.verify(proof.strip(), request)
        if not await self._replay.first_use(verified.device_id, verified.jti, verified.issued_at):
            raise InvalidDeviceProof("The device proof was used before (jti).")
        try:
            record = await self._directory.device(verified.device_id)
        except GraphError as error:
            _log.warning("device lookup failed: %s", error)
            raise ServiceUnavailable(
                "Microsoft Graph cannot be reached to check the device; retry later.",
                retry_after_seconds=GRAPH_RETRY_AFTER_SECONDS,
            ) from None
        if record is None:
            raise InvalidDeviceProof("Entra ID knows no device with this deviceId.")
        if not record.holds_key(verified.thumbprint, verified.public_key_sha256):
            raise InvalidDeviceProof("The certificate is not registered for this device.")
        if not record.account_enabled:
            raise Forbidden("This device is disabled in Entra ID.")
        if record.trust_type not in self._trust_types:
            raise Forbidden(f"Devices of trust type '{record.trust_type}' are not accepted here.")
        if await self._is_blocked(verified.device_id):
            raise Forbidden("This device is blocked.")
        return ProvenDevice(
            device_id=verified.device_id,
            cert_thumbprint=verified.thumbprint,
            trust_type=record.trust_type or "",
            object_id=record.object_id,
        )


@dataclass(frozen=True, slots=True)
class AuthenticatedDevice:
    """Who called a device endpoint, as `BOOTSTRAP_AUTH` asked them to prove it."""

    auth: BootstrapAuth
    tenant_id: str
    device_id: str | None  # the proven device; None in `user` mode (nothing proves a device)
    cert_thumbprint: str | None  # the device certificate's SHA-1 thumbprint, with a proof
    user: Caller | None  # the user's token, in `user` and `device+user` modes
    device_object_id: str | None = None  # the proven device's Graph object id

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
    credential: AsyncTokenCredential
    directory: DeviceDirectory

    @classmethod
    def from_settings(cls) -> _DeviceTrust:
        settings = get_settings()
        # The app's identity (the managed identity in Azure), as discovery reads Graph.
        credential = app_credential()
        graph = GraphClient(settings.graph_base_url, credential, max_retries=0)
        tenant_id = settings.tenant_id

        async def blocked(device_id: str) -> bool:
            return await is_blocked(tenant_id, device_id)

        directory = GraphDeviceDirectory(graph)
        authenticator = DeviceAuthenticator(
            verifier=ProofVerifier(app_hostnames(settings, os.environ.get("WEBSITE_HOSTNAME"))),
            replay=TableReplayGuard(get_storage()),
            directory=directory,
            trust_types=settings.device_trust_types,
            is_blocked=blocked,
        )
        return cls(authenticator, graph, credential, directory)


# One per event loop: its Graph client, credential and storage belong to that loop.
_device_trust: PerLoop[_DeviceTrust] = PerLoop(_DeviceTrust.from_settings)


def default_device_authenticator() -> DeviceAuthenticator:
    return _device_trust.get().authenticator


async def lookup_device(device_id: str) -> DeviceRecord | None:
    """The device's Entra ID record through the same cached Graph lookup proofs use (admin
    views; a bundle never needs more than its proof already read). 503 if Graph is down."""
    try:
        return await _device_trust.get().directory.device(device_id)
    except GraphError as error:
        _log.warning("device lookup failed: %s", error)
        raise ServiceUnavailable(
            "Microsoft Graph cannot be reached to look the device up; retry later.",
            retry_after_seconds=GRAPH_RETRY_AFTER_SECONDS,
        ) from None


async def close_device_authenticator() -> None:
    """Close this loop's Graph client and credential, if device proofs opened them."""
    trust = _device_trust.peek()
    if trust is None:
        return
    _device_trust.discard()
    await trust.graph.close()
    await trust.credential.close()
