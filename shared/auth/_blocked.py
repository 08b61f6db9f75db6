"""`BlockedDevices` reads, group-committed per tenant: concurrent requests share one query.

A $filter allows 15 comparisons, so one query answers for up to 14 devices of one tenant (plus the
PartitionKey comparison). Bundles check the requested device; device proofs the proven one.
"""

from __future__ import annotations

import functools
from typing import Final

from shared.batching import Coalescer
from shared.names import BLOCKED_DEVICES
from shared.per_loop import PerLoop
from shared.storage import get_storage, translate_errors

MAX_LOOKUPS: Final = 14  # + the PartitionKey comparison = Azure's 15-comparison limit


class _BlockedDevices:
    def __init__(self) -> None:
        self._lookups: dict[str, Coalescer[str, bool]] = {}

    async def is_blocked(self, tenant_id: str, device_id: str) -> bool:
        coalescer = self._lookups.get(tenant_id)
        if coalescer is None:
            coalescer = Coalescer(
                functools.partial(_blocked_among, tenant_id), max_batch=MAX_LOOKUPS
            )
            self._lookups[tenant_id] = coalescer
        return await coalescer.submit(device_id)


async def _blocked_among(tenant_id: str, device_ids: list[str]) -> list[bool]:
    """Which of `device_ids` are in BlockedDevices: one query for the whole batch."""
    table = await get_storage().table(BLOCKED_DEVICES)
    unique = sorted(set(device_ids))
    parameters = {"tenant": tenant_id, **{f"d{i}": device for i, device in enumerate(unique)}}
    rows = " or ".join(f"RowKey eq @d{i}" for i in range(len(unique)))
    # Spaces around the parentheses: the SDK substitutes @names between whitespace only.
    query = f"PartitionKey eq @tenant and ( {rows} )"
    async with translate_errors():
        blocked = {
            entity["RowKey"]
            async for entity in table.query_entities(
                query, parameters=parameters, select=["RowKey"]
            )
        }
    return [device in blocked for device in device_ids]


_blocked: PerLoop[_BlockedDevices] = PerLoop(_BlockedDevices)


async def is_blocked(tenant_id: str, device_id: str) -> bool:
    """Whether `BlockedDevices` holds this device of this tenant."""
    return await _blocked.get().is_blocked(tenant_id, device_id)
