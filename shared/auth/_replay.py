"""Single use of a device proof's `jti`, across every instance of the app: table `DeviceProofs`.

A proof is accepted only while its `iat` is within 300 s of now, so the same proof can come back
for at most 10 minutes. Each accepted proof inserts one row, and an insert that finds the row
already there is a replay:

- PartitionKey: the 10-minute window of the proof's `iat` (`20261202T0240Z`). A replay carries the
  same signed `iat`, so it lands in the same partition; the insert is a point write.
- RowKey: base64url SHA-256 of `deviceId` + newline + `jti`, so any `jti` a device chooses makes a
  valid key, and two devices choosing the same `jti` never collide.

A row of window W can matter until W + 10 min + 5 min; after that no proof of that window is
accepted anyway. Partition keys sort by time, so the dead rows are one range query
(`PartitionKey lt cutoff`), deleted 100 to a transaction (a transaction's limit; every row of a
batch shares its partition). Each instance purges at most once per `PURGE_INTERVAL_SECONDS`, in
the background of a request; instances that purge the same rows at once only repeat work.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final, Protocol

from azure.core.exceptions import HttpResponseError, ResourceExistsError
from azure.data.tables.aio import TableClient

from shared.b64url import b64url_encode
from shared.names import DEVICE_PROOFS
from shared.storage import Storage, translate_errors

WINDOW_SECONDS: Final = 600
# The newest iat of a window plus the 300 s a proof stays acceptable.
ROW_LIFETIME_SECONDS: Final = WINDOW_SECONDS + 300
PURGE_INTERVAL_SECONDS: Final = 600
_BATCH: Final = 100
_log = logging.getLogger(__name__)


class ReplayGuard(Protocol):
    async def first_use(self, device_id: str, jti: str, issued_at: int) -> bool:
        """True the first time this device's `jti` is seen; False for a replay."""
        ...


def window_key(moment: float) -> str:
    start = int(moment) // WINDOW_SECONDS * WINDOW_SECONDS
    return datetime.fromtimestamp(start, UTC).strftime("%Y%m%dT%H%MZ")


def use_key(device_id: str, jti: str) -> str:
    return b64url_encode(hashlib.sha256(f"{device_id}\n{jti}".encode()).digest())


class TableReplayGuard:
    """`ReplayGuard` on table `DeviceProofs` of `storage`."""

    def __init__(self, storage: Storage, *, clock: Callable[[], float] = time.time) -> None:
        self._storage = storage
        self._clock = clock
        self._next_purge = 0.0
        self._purges: set[asyncio.Task[int]] = set()

    async def first_use(self, device_id: str, jti: str, issued_at: int) -> bool:
        table = await self._storage.table(DEVICE_PROOFS)
        entity = {
            "PartitionKey": window_key(issued_at),
            "RowKey": use_key(device_id, jti),
            "deviceId": device_id,
            "iat": issued_at,
        }
        try:
            async with translate_errors():
                await table.create_entity(entity)
        except ResourceExistsError:
            return False
        self._maybe_purge()
        return True

    def _maybe_purge(self) -> None:
        now = self._clock()
        if now < self._next_purge:
            return
        self._next_purge = now + PURGE_INTERVAL_SECONDS
        task = asyncio.get_running_loop().create_task(self.purge(now))
        self._purges.add(task)  # a reference, so the running purge is not collected
        task.add_done_callback(self._purges.discard)

    async def purge(self, now: float) -> int:
        """Delete the rows no proof can need any more; how many were deleted."""
        table = await self._storage.table(DEVICE_PROOFS)
        cutoff = window_key(now - ROW_LIFETIME_SECONDS)
        deleted = 0
        try:
            batch: list[tuple[str, str]] = []
            async for row in table.query_entities(
                "PartitionKey lt @cutoff",
                parameters={"cutoff": cutoff},
                select=["PartitionKey", "RowKey"],
            ):
                key = (row["PartitionKey"], row["RowKey"])
                if batch and (len(batch) == _BATCH or batch[0][0] != key[0]):
                    deleted += await _delete(table, batch)
                    batch = []
                batch.append(key)
            if batch:
                deleted += await _delete(table, batch)
        except HttpResponseError:
            # Another instance may be deleting the same rows; the next purge finishes the job.
            _log.info("device proof purge stopped early", exc_info=True)
        return deleted


async def _delete(table: TableClient, keys: list[tuple[str, str]]) -> int:
    await table.submit_transaction(
        [("delete", {"PartitionKey": pk, "RowKey": rk}) for pk, rk in keys]
    )
    return len(keys)
