"""Single use of a device proof's `jti`, across every instance of the app: table `DeviceProofs`.

A proof is accepted only while its `iat` is within 300 s of now, so the same proof can come back
for at most 10 minutes. Each accepted proof inserts one row, and an insert that finds the row
already there is a replay:

- PartitionKey: the 10-minute window of the proof's `iat` (`20261202T0240Z`). A replay carries the
  same signed `iat`, so it lands in the same partition; the insert is a point write.
- RowKey: base64url SHA-256 of `deviceId` + newline + `jti`, so any `jti` a device chooses makes a
  valid key, and two devices choosing the same `jti` never collide.

Concurrent proofs of one window are inserted together (`shared.batching.Coalescer`): one table
transaction of up to 100 inserts instead of one request each. A transaction is atomic, so when
one of its rows exists (a replay) it fails as a whole, and its rows are inserted one by one to
learn which; that happens only for replays.

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
from azure.data.tables import TableTransactionError
from azure.data.tables.aio import TableClient

from shared.b64url import b64url_encode
from shared.batching import Coalescer
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
        self._inserts: dict[str, Coalescer[dict[str, object], bool]] = {}

    async def first_use(self, device_id: str, jti: str, issued_at: int) -> bool:
        window = window_key(issued_at)
        coalescer = self._inserts.get(window) or self._new_window(window)
        entity = {
            "PartitionKey": window,
            "RowKey": use_key(device_id, jti),
            "deviceId": device_id,
            "iat": issued_at,
        }
        fresh = await coalescer.submit(entity)
        if fresh:
            self._maybe_purge()
        return fresh

    def _new_window(self, window: str) -> Coalescer[dict[str, object], bool]:
        """The window's batcher; batchers of windows no proof can use any more are dropped."""
        oldest = window_key(self._clock() - ROW_LIFETIME_SECONDS)
        self._inserts = {key: value for key, value in self._inserts.items() if key >= oldest}
        coalescer = self._inserts[window] = Coalescer(self._insert_all, max_batch=_BATCH)
        return coalescer

    async def _insert_all(self, entities: list[dict[str, object]]) -> list[bool]:
        """Insert a batch: all new in one transaction, else each alone to find the replays."""
        table = await self._storage.table(DEVICE_PROOFS)
        if len({entity["RowKey"] for entity in entities}) == len(entities):
            try:
                async with translate_errors():
                    await table.submit_transaction([("create", entity) for entity in entities])
                return [True] * len(entities)
            except TableTransactionError:
                pass  # a row exists: find which, one by one
        return [await self._insert_one(table, entity) for entity in entities]

    @staticmethod
    async def _insert_one(table: TableClient, entity: dict[str, object]) -> bool:
        try:
            async with translate_errors():
                await table.create_entity(entity)
        except ResourceExistsError:
            return False
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
