"""Writes `/groups/delta` pages into `AadGroups` and `AadGroupMembers`.

`AadGroups`: PartitionKey tenant, RowKey group object id. `AadGroupMembers`: PartitionKey group
object id, RowKey member object id, `memberType` user | device | group (from the member's
`@odata.type`), and a `tenantId` column so a full run's sweep can find the tenant's rows.

Graph sends `members@delta` with a group: every member in the first round, afterwards only the
members added and, with `@removed`, those removed. A large group's members arrive split across
several entries of the same group, on one page or several, so entries are folded per group and
member within a page and every write is an idempotent upsert: a page written twice (a resumed
run) changes nothing. A removed membership or group stays, with `isDeleted=true`; a removed
group's memberships are marked removed with it.

Scope (`DISCOVERY_GROUPS`): `all` keeps security groups only (Graph cannot filter
`/groups/delta` by `securityEnabled`, so other groups are dropped here, without a row); a list
of ids is applied by Graph itself (`$filter=id eq ...`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final, Literal

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables.aio import TableClient

from shared.discovery._graph import GROUP_PROPERTIES
from shared.discovery._sweep import mark_unseen_deleted
from shared.storage import (
    TableOperation,
    Transactions,
    translate_errors,
    upsert_merge,
    upsert_replace,
)

MemberType = Literal["user", "device", "group"]
MEMBER_TYPES: Final[dict[str, MemberType]] = {
    "#microsoft.graph.user": "user",
    "#microsoft.graph.device": "device",
    "#microsoft.graph.group": "group",
}
IS_DELETED: Final = "isDeleted"
LAST_DISCOVERED_AT: Final = "lastDiscoveredAt"
LAST_SEEN_RUN_ID: Final = "lastSeenRunId"
MEMBERS_DELTA: Final = "members@delta"


class GroupWriter:
    """Upserts one run's groups and memberships for one tenant, stamped with the run's `stamp`."""

    def __init__(
        self,
        groups: TableClient,
        members: TableClient,
        tenant_id: str,
        stamp: str,
        *,
        security_only: bool,
    ) -> None:
        self._groups = groups
        self._members = members
        self._tenant_id = tenant_id
        self._stamp = stamp
        self._security_only = security_only
        self._transactions = Transactions()

    async def write_complete(self, items: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """A page of the first round: the same shapes as a delta page, every member added."""
        return await self.write_delta(items)

    async def write_delta(self, items: Sequence[Mapping[str, Any]]) -> tuple[int, int]:
        """Returns (upserts, deletes), groups and memberships together."""
        now = datetime.now(UTC)
        group_ops: list[TableOperation] = []
        member_ops: dict[str, list[TableOperation]] = {}
        upserts = deletes = 0
        for group in _fold_groups(items):
            group_id = str(group["id"])
            if "@removed" in group:
                if self._security_only and not await self._stored(group_id):
                    continue  # a group outside the scope (not a security group) has no row
                deletes += 1
                group_ops.append(upsert_merge(self._group_row(group_id, now, deleted=True)))
                member_ops[group_id] = await self._all_members_removed(group_id, now)
                deletes += len(member_ops[group_id])
                continue
            if not await self._in_scope(group):
                continue
            upserts += 1
            group_ops.append(upsert_merge(self._group_row(group_id, now, group=group)))
            operations = member_ops.setdefault(group_id, [])
            for member in group.get(MEMBERS_DELTA, {}).values():
                removed = "@removed" in member
                member_type = MEMBER_TYPES.get(str(member.get("@odata.type", "")).lower())
                if member_type is None and not removed:
                    continue  # contacts, service principals: not discovered
                row = self._member_row(group_id, str(member["id"]), member_type, now, removed)
                operations.append(upsert_merge(row) if removed else upsert_replace(row))
                deletes += removed
                upserts += not removed
        await asyncio.gather(
            self._submit(self._groups, group_ops),
            *(self._submit(self._members, ops) for ops in member_ops.values()),
        )
        return upserts, deletes

    async def mark_unseen_deleted(self) -> int:
        """After a full round: live groups and memberships this run did not stamp are deleted."""
        now = datetime.now(UTC)
        unseen = {"tenant": self._tenant_id, "run": self._stamp}
        groups = await mark_unseen_deleted(
            self._groups,
            "PartitionKey eq @tenant and isDeleted eq false and lastSeenRunId ne @run",
            unseen,
            lambda row: upsert_merge(self._group_row(row["RowKey"], now, deleted=True)),
            self._transactions,
        )
        members = await mark_unseen_deleted(
            self._members,
            "tenantId eq @tenant and isDeleted eq false and lastSeenRunId ne @run",
            unseen,
            lambda row: upsert_merge(
                self._member_row(row["PartitionKey"], row["RowKey"], None, now, True)
            ),
            self._transactions,
        )
        return groups + members

    async def _in_scope(self, group: Mapping[str, Any]) -> bool:
        if not self._security_only:
            return True
        if "securityEnabled" in group:
            return group["securityEnabled"] is True
        # A partial delta object: in scope if we already keep it as a security group.
        try:
            async with translate_errors():
                row = await self._groups.get_entity(self._tenant_id, str(group["id"]))
        except ResourceNotFoundError:
            return False
        return row.get("securityEnabled") is True

    async def _stored(self, group_id: str) -> bool:
        try:
            async with translate_errors():
                await self._groups.get_entity(self._tenant_id, group_id, select=["RowKey"])
        except ResourceNotFoundError:
            return False
        return True

    async def _all_members_removed(self, group_id: str, now: datetime) -> list[TableOperation]:
        rows = self._members.query_entities(
            "PartitionKey eq @group and isDeleted eq false",
            parameters={"group": group_id},
            select=["RowKey"],
        )
        async with translate_errors():
            return [
                upsert_merge(self._member_row(group_id, row["RowKey"], None, now, True))
                async for row in rows
            ]

    def _group_row(
        self,
        group_id: str,
        now: datetime,
        *,
        group: Mapping[str, Any] | None = None,
        deleted: bool = False,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"PartitionKey": self._tenant_id, "RowKey": group_id}
        for name in GROUP_PROPERTIES:
            if group is not None and group.get(name) is not None:
                value = group[name]
                row[name] = bool(value) if name == "securityEnabled" else str(value)
        return row | {IS_DELETED: deleted, LAST_DISCOVERED_AT: now, LAST_SEEN_RUN_ID: self._stamp}

    def _member_row(
        self,
        group_id: str,
        member_id: str,
        member_type: MemberType | None,
        now: datetime,
        removed: bool,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {"PartitionKey": group_id, "RowKey": member_id}
        if member_type is not None:
            row["memberType"] = member_type
        return row | {
            "tenantId": self._tenant_id,
            IS_DELETED: removed,
            LAST_DISCOVERED_AT: now,
            LAST_SEEN_RUN_ID: self._stamp,
        }

    async def _submit(self, table: TableClient, operations: Sequence[TableOperation]) -> None:
        await self._transactions.submit(table, operations)


def _fold_groups(items: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Entries folded per group in page order: later properties win, members fold per member
    id (the last entry wins), a group removal replaces what came before and a later entry
    (a restore) replaces the removal. `members@delta` becomes a dict by member id."""
    folded: dict[str, dict[str, Any]] = {}
    for item in items:
        group_id = str(item.get("id") or "")
        if not group_id:
            continue
        earlier = folded.get(group_id)
        if earlier is None or "@removed" in item or "@removed" in earlier:
            earlier = folded[group_id] = {MEMBERS_DELTA: {}}
        members: dict[str, Any] = earlier[MEMBERS_DELTA]
        earlier.update({k: v for k, v in item.items() if k != MEMBERS_DELTA})
        for member in item.get(MEMBERS_DELTA) or ():
            if isinstance(member, Mapping) and member.get("id"):
                members[str(member["id"])] = member
    return list(folded.values())
