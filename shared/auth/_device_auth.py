"""Proving a device: the proof itself (`_device_proof`), its single use (`_replay`), then the
device's record in Entra ID (`_device_registry`) and `BlockedDevices`.

401 (`InvalidDeviceProof`): no proof, a proof that does not verify or match the request, a
replayed `jti`, a device Entra ID does not know, a certificate not registered for it.
403: the device is disabled, its `trustType` is not accepted, or it is blocked.
503 + Retry-After: Graph cannot be reached. Every refusal is logged with its reason only (never
the proof, a token or a certificate).

The `jti` is spent after the signature and claims hold and before Graph is asked, so a replay
costs no Graph call, and no one but the key holder can spend a device's `jti`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Final

from shared.auth._device_proof import ProofRequest, ProofVerifier
from shared.auth._device_registry import DeviceDirectory
from shared.auth._replay import ReplayGuard
from shared.errors import Forbidden, InvalidDeviceProof, ProblemError, ServiceUnavailable
from shared.graph import GraphError

GRAPH_RETRY_AFTER_SECONDS: Final = 10
_log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ProvenDevice:
    """A device that proved it holds the key of a certificate Entra ID registered for it."""

    device_id: str  # lower-case GUID
    cert_thumbprint: str  # SHA-1, 40 upper-case hex digits
    trust_type: str


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
            _log.info(
                "device proof refused",
                extra={"reason": refused.detail, "status": refused.status},
            )
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
        )
