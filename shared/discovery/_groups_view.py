"""`GET /api/groups`: the discovered groups, paged like the runs view (`pageSize`, then the
`continuation` the previous page returned: the last group id, RowKeys being sorted)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from shared.ids import parse_guid
from shared.names import AAD_GROUPS
from shared.paging import parse_page_query
from shared.storage import Storage, get_storage, partition_page
from shared.times import format_utc

GROUPS_DEFAULT_PAGE_SIZE: Final = 100
GROUPS_MAX_PAGE_SIZE: Final = 1000
GROUP_COLUMNS: Final = ("displayName", "securityEnabled", "isDeleted", "lastDiscoveredAt")


@dataclass(frozen=True, slots=True)
class GroupsPage:
    groups: list[dict[str, Any]]
    continuation: str | None


def parse_groups_query(page_size: str | None, next_token: str | None) -> tuple[int, str | None]:
    """`pageSize` and `next` of `GET /api/groups`, or `BadRequest` naming them."""
    return parse_page_query(
        page_size,
        next_token,
        default=GROUPS_DEFAULT_PAGE_SIZE,
        maximum=GROUPS_MAX_PAGE_SIZE,
        read_next=parse_guid,
        what="groups",
    )


async def list_groups(
    tenant_id: str, *, size: int, after: str | None, storage: Storage | None = None
) -> GroupsPage:
    """Up to `size` of the tenant's groups in id order, after the group id `after`."""
    table = await (storage or get_storage()).table(AAD_GROUPS)
    rows, next_group = await partition_page(table, tenant_id, size=size, after=after)
    return GroupsPage([_public(row) for row in rows], next_group)


def _public(row: dict[str, Any]) -> dict[str, Any]:
    view: dict[str, Any] = {"groupId": row["RowKey"]}
    for column in GROUP_COLUMNS:
        value = row.get(column)
        view[column] = format_utc(value) if isinstance(value, datetime) else value
    return view
