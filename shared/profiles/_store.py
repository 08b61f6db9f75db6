"""`InstallProfiles`: PartitionKey tenant id, RowKey profile name; groupId, priority, overrides
(the ccmsetup values as JSON), updatedBy (the admin's object id), updatedAt."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from azure.core.exceptions import ResourceNotFoundError
from azure.data.tables import UpdateMode
from azure.data.tables.aio import TableClient

from shared.paging import parse_page_query
from shared.profiles._model import NAME_PATTERN, Overrides, Profile
from shared.storage import partition_page, translate_errors

PROFILES_DEFAULT_PAGE_SIZE: Final = 100
PROFILES_MAX_PAGE_SIZE: Final = 1000


@dataclass(frozen=True, slots=True)
class ProfilesPage:
    profiles: list[Profile]
    next: str | None


def parse_profiles_query(page_size: str | None, next_token: str | None) -> tuple[int, str | None]:
    """`pageSize` and `next` of `GET /api/profiles`, or `BadRequest` naming them."""
    return parse_page_query(
        page_size,
        next_token,
        default=PROFILES_DEFAULT_PAGE_SIZE,
        maximum=PROFILES_MAX_PAGE_SIZE,
        read_next=lambda token: token if NAME_PATTERN.fullmatch(token) else None,
        what="install profiles",
    )


class ProfileStore:
    def __init__(self, table: TableClient, tenant_id: str) -> None:
        self._table = table
        self._tenant_id = tenant_id

    async def put(self, profile: Profile, *, updated_by: str) -> Profile:
        stored = Profile(
            profile.name,
            profile.group_id,
            profile.priority,
            profile.overrides,
            updated_by=updated_by,
            updated_at=datetime.now(UTC),
        )
        entity = {
            "PartitionKey": self._tenant_id,
            "RowKey": stored.name,
            "groupId": stored.group_id,
            "priority": stored.priority,
            "overrides": stored.overrides.serialize(),
            "updatedBy": updated_by,
            "updatedAt": stored.updated_at,
        }
        async with translate_errors():
            await self._table.upsert_entity(entity, mode=UpdateMode.REPLACE)
        return stored

    async def get(self, name: str) -> Profile | None:
        try:
            async with translate_errors():
                row = await self._table.get_entity(self._tenant_id, name)
        except ResourceNotFoundError:
            return None
        return _profile(row)

    async def delete(self, name: str) -> bool:
        """True when the profile existed."""
        if await self.get(name) is None:
            return False
        async with translate_errors():
            await self._table.delete_entity(self._tenant_id, name)
        return True

    async def page(self, size: int, after: str | None) -> ProfilesPage:
        rows, next_name = await partition_page(self._table, self._tenant_id, size=size, after=after)
        return ProfilesPage([_profile(row) for row in rows], next_name)

    async def all(self) -> list[Profile]:
        """Every profile of the tenant, best first (a tenant has tens, not thousands)."""
        async with translate_errors():
            rows = [
                _profile(row)
                async for row in self._table.query_entities(
                    "PartitionKey eq @tenant", parameters={"tenant": self._tenant_id}
                )
            ]
        return sorted(rows, key=lambda profile: profile.rank)


def _profile(row: dict[str, Any]) -> Profile:
    return Profile(
        name=row["RowKey"],
        group_id=row["groupId"],
        priority=int(row["priority"]),
        overrides=Overrides.deserialize(row.get("overrides") or ""),
        updated_by=row.get("updatedBy"),
        updated_at=row.get("updatedAt"),
    )
