"""A proven device's record in Entra ID, read from Microsoft Graph and cached for at most 60 s.

`GET {GRAPH_BASE_URL}/devices?$filter=deviceId eq '{id}'&$select=...` (application permission
Device.Read.All) through the one Graph client (`shared.graph`). The SDK's retries are off here: a
device is waiting, so an unreachable Graph is a 503 with `Retry-After` at once and the device
retries. Answers, "no such device" included, are cached per process for at most `CACHE_SECONDS`,
so disabling a device in Entra ID stops it within a minute; failures are not cached.

The certificate's key is registered as MS-DVRJ 2.3.3 defines an `alternativeSecurityIds[].key`:
base64 of the UTF-16LE text `X509:<SHA1-TP-PUBKEY>` + the SHA-1 thumbprint (40 hex digits) + the
base64 SHA-256 of the PKCS#1 RSAPublicKey DER, with or without a `+` between the two.
"""

from __future__ import annotations

import base64
import binascii
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final, Protocol
from urllib.parse import quote

from shared.graph import GraphClient

CACHE_SECONDS: Final = 60.0
CACHE_MAX_DEVICES: Final = 10_000  # ~1 KB each: a bounded few MB per worker
DEVICE_SELECT: Final = "id,deviceId,accountEnabled,trustType,alternativeSecurityIds"
_KEY_TEXT: Final = re.compile(
    r"X509:<SHA1-TP-PUBKEY>(?P<thumbprint>[0-9A-Fa-f]{40})\+?(?P<sha256>[A-Za-z0-9+/]{43}=)"
)


@dataclass(frozen=True, slots=True)
class DeviceRecord:
    """What Entra ID says about a device (Graph `device`)."""

    object_id: str
    device_id: str
    account_enabled: bool
    trust_type: str | None
    keys: tuple[str, ...]  # alternativeSecurityIds[].key, base64 as Graph sends them

    @classmethod
    def from_graph(cls, item: dict[str, Any]) -> DeviceRecord:
        ids = item.get("alternativeSecurityIds") or []
        keys = tuple(
            entry["key"]
            for entry in ids
            if isinstance(entry, dict) and isinstance(entry.get("key"), str)
        )
        trust = item.get("trustType")
        return cls(
            object_id=str(item.get("id") or ""),
            device_id=str(item.get("deviceId") or "").lower(),
            account_enabled=item.get("accountEnabled") is True,
            trust_type=trust if isinstance(trust, str) else None,
            keys=keys,
        )

    def holds_key(self, thumbprint: str, public_key_sha256: str) -> bool:
        """Whether one of the registered keys is this certificate's (MS-DVRJ 2.3.3)."""
        return any(registered_key_matches(key, thumbprint, public_key_sha256) for key in self.keys)


def registered_key_matches(key: str, thumbprint: str, public_key_sha256: str) -> bool:
    try:
        text = base64.b64decode(key, validate=True).decode("utf-16-le")
    except (ValueError, binascii.Error):
        return False
    match = _KEY_TEXT.fullmatch(text)
    return (
        match is not None
        and match["thumbprint"].upper() == thumbprint.upper()
        and match["sha256"] == public_key_sha256
    )


def alternative_security_id_key(thumbprint: str, public_key_sha256: str) -> str:
    """The `alternativeSecurityIds[].key` Entra ID keeps for a certificate (base64)."""
    text = f"X509:<SHA1-TP-PUBKEY>{thumbprint.upper()}{public_key_sha256}"
    return base64.b64encode(text.encode("utf-16-le")).decode("ascii")


class DeviceDirectory(Protocol):
    async def device(self, device_id: str) -> DeviceRecord | None:
        """The device with this deviceId, None when Entra ID has none; `GraphError` if unknown."""
        ...


class GraphDeviceDirectory:
    """Devices from Graph, each answer kept for `ttl` seconds of `clock`."""

    def __init__(
        self,
        graph: GraphClient,
        *,
        clock: Callable[[], float] = time.monotonic,
        ttl: float = CACHE_SECONDS,
        max_entries: int = CACHE_MAX_DEVICES,
    ) -> None:
        self._graph = graph
        self._clock = clock
        self._ttl = ttl
        self._max_entries = max_entries
        self._cache: OrderedDict[str, tuple[float, DeviceRecord | None]] = OrderedDict()

    def url(self, device_id: str) -> str:
        device_filter = quote(f"deviceId eq '{device_id}'", safe="'")
        return f"{self._graph.base_url}/devices?$filter={device_filter}&$select={DEVICE_SELECT}"

    async def device(self, device_id: str) -> DeviceRecord | None:
        device_id = device_id.lower()
        now = self._clock()
        cached = self._cache.get(device_id)
        if cached is not None and cached[0] > now:
            return cached[1]
        body = await self._graph.get_json(self.url(device_id))
        found = [
            DeviceRecord.from_graph(item)
            for item in body.get("value") or ()
            if isinstance(item, dict) and str(item.get("deviceId", "")).lower() == device_id
        ]
        record = found[0] if len(found) == 1 else None
        self._remember(device_id, now + self._ttl, record)
        return record

    def _remember(self, device_id: str, expires: float, record: DeviceRecord | None) -> None:
        self._cache[device_id] = (expires, record)
        self._cache.move_to_end(device_id)
        while len(self._cache) > self._max_entries:
            self._cache.popitem(last=False)
