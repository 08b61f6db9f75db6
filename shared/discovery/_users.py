"""Writes Graph users into `AadUsers` (PartitionKey tenant, RowKey object id).

Every write is an idempotent upsert by object id, sent in transactions of at most 100 entities
(Azurite breaks above 100) with a few transactions in flight. A complete user replaces its row,
so a property cleared in Entra ID (null, or never set) disappears; a partial delta object only
merges what it carries, and one that clears a property is read and replaced, because a table
MERGE cannot remove a column.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.discovery._graph import USER_PROPERTIES
from shared.discovery._sweep import mark_unseen_deleted
from shared.storage import (
    TableOperation,
    Transactions,
    translate_errors,
    upsert_merge,
    upsert_replace,
)

# Columns this module adds to the Graph ones.
IS_DELETED: Final = "isDeleted"
LAST_DISCOVERED_AT: Final = "lastDiscoveredAt"
LAST_SEEN_RUN_ID: Final = "lastSeenRunId"


class UserWriter:
    """Upserts one run's users for one tenant, stamping each row with the run's `stamp`."""

    def __init__(self, table: TableClient, tenant_id: str, stamp: str) -> None:
        self._table = table
        self._tenant_id = tenant_id
        self._stamp = stamp
        self._transactions = Transactions()

    async def write_complete(self, users: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Users carrying every selected property (`/users`, the first delta round).
        Returns (upserts, deletes) like `write_delta`; a complete page deletes nothing."""
        now = datetime.now(UTC)
        operations = [upsert_replace(self._entity(user, now)) for user in _last_by_id(users)]
        await self._submit(operations)
        return len(operations), 0

    async def write_delta(self, users: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """A delta page: creates, updates, `@removed`. Returns (upserts, deletes)."""
        now = datetime.now(UTC)
        operations: list[TableOperation] = []
        deletes = 0
        for user in _merged_by_id(users):
            if "@removed" in user:
                deletes += 1
                operations.append(upsert_merge(self._removed(user["id"], now)))
            elif all(name in user for name in USER_PROPERTIES):
                operations.append(upsert_replace(self._entity(user, now)))
            elif any(user.get(name, 0) is None for name in USER_PROPERTIES):
                operations.append(upsert_replace(await self._overlay(user, now)))
            else:
                operations.append(upsert_merge(self._entity(user, now)))
        await self._submit(operations)
        return len(operations) - deletes, deletes

    async def mark_unseen_deleted(self) -> int:
        """After a full enumeration: every live row this run did not stamp is deleted."""
        now = datetime.now(UTC)
        return await mark_unseen_deleted(
            self._table,
            "PartitionKey eq @tenant and isDeleted eq false and lastSeenRunId ne @run",
            {"tenant": self._tenant_id, "run": self._stamp},
            lambda row: upsert_merge(self._removed(row["RowKey"], now)),
            self._transactions,
        )

    def _entity(self, user: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        entity: dict[str, Any] = {
            "PartitionKey": self._tenant_id,
            "RowKey": str(user["id"]),
        }
        for name in USER_PROPERTIES:
            value = user.get(name)
            if value is not None:
                entity[name] = bool(value) if name == "accountEnabled" else str(value)
        entity[IS_DELETED] = False
        entity[LAST_DISCOVERED_AT] = now
        entity[LAST_SEEN_RUN_ID] = self._stamp
        return entity

    def _removed(self, user_id: str, now: datetime) -> dict[str, Any]:
        return {
            "PartitionKey": self._tenant_id,
            "RowKey": str(user_id),
            IS_DELETED: True,
            LAST_DISCOVERED_AT: now,
            LAST_SEEN_RUN_ID: self._stamp,
        }

    async def _overlay(self, user: Mapping[str, Any], now: datetime) -> dict[str, Any]:
        """The stored row with this partial update applied, nulls removing columns."""
        stored: Mapping[str, Any] = {}
        with contextlib.suppress(ResourceNotFoundError):
            async with translate_errors():
                stored = await self._table.get_entity(self._tenant_id, str(user["id"]))
        merged = {name: stored.get(name) for name in USER_PROPERTIES}
        merged.update({name: user[name] for name in USER_PROPERTIES if name in user})
        return self._entity({"id": user["id"], **merged}, now)

    async def _submit(self, operations: Sequence[TableOperation]) -> None:
        await self._transactions.submit(self._table, operations)


def _last_by_id(users: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """One entry per id (a transaction may not touch a row twice); the last one wins."""
    return list({str(user["id"]): user for user in users if user.get("id")}.values())


def _merged_by_id(users: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Delta entries folded per id in page order: later properties win, a removal replaces
    what came before, and an entry after a removal (a restore) replaces the removal."""
    merged: dict[str, dict[str, Any]] = {}
    for user in users:
        user_id = str(user.get("id") or "")
        if not user_id:
            continue
        earlier = merged.get(user_id)
        if earlier is None or "@removed" in user or "@removed" in earlier:
            merged[user_id] = dict(user)
        else:
            earlier.update(user)
    return list(merged.values())
