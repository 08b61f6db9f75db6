"""Install profiles: per-group ccmsetup values (README "Install profiles").

    profile = parse_profile(check_name(name), body)    # 400 naming every bad field
    await save_profile(tenant, profile, updated_by=oid)  # queues the rebuild job, returns at once
    applied = await applied_profile(tenant, [device_object_id, user_oid])  # bundle: point reads
    answer = await explain(tenant, device_object_id=..., user_id=...)        # GET .../resolve

    await run_rebuild_job(tenant, budget_seconds=60)  # the job message's invocation

`rebuild_resolved(tenant)` asks for a rebuild after each group discovery run; `_resolved`
explains the derived table that keeps a bundle's lookup to one or two point reads, and the
checkpointed job that rebuilds it.
"""

from __future__ import annotations

import asyncio
from typing import Any

from azure.core.exceptions import ResourceNotFoundError

from shared.names import AAD_GROUPS, INSTALL_PROFILES
from shared.profiles._model import (
    DEFAULT_PROFILE,
    PROPERTY_CHECKS,
    Overrides,
    Profile,
    check_name,
    parse_profile,
    parse_resolve_query,
)
from shared.profiles._resolved import (
    JobStatus,
    RebuildState,
    Resolution,
    best,
    lookup,
    rebuild_state,
    request_rebuild,
    run_rebuild_job,
)
from shared.profiles._store import (
    PROFILES_MAX_PAGE_SIZE,
    ProfilesPage,
    ProfileStore,
    parse_profiles_query,
)
from shared.storage import Storage, get_storage, translate_errors

__all__ = [
    "DEFAULT_PROFILE",
    "PROFILES_MAX_PAGE_SIZE",
    "PROPERTY_CHECKS",
    "JobStatus",
    "Overrides",
    "Profile",
    "ProfilesPage",
    "RebuildState",
    "Resolution",
    "applied_profile",
    "check_name",
    "delete_profile",
    "explain",
    "get_profile",
    "list_profiles",
    "parse_profile",
    "parse_profiles_query",
    "parse_resolve_query",
    "rebuild_resolved",
    "rebuild_state",
    "run_rebuild_job",
    "save_profile",
]


async def _store(tenant_id: str, storage: Storage | None) -> ProfileStore:
    return ProfileStore(await (storage or get_storage()).table(INSTALL_PROFILES), tenant_id)


async def save_profile(
    tenant_id: str, profile: Profile, *, updated_by: str, storage: Storage | None = None
) -> Profile:
    """Store (create or replace) the profile and ask for a rebuild of the resolved table
    (queued: `rebuild_state` says when it has taken effect)."""
    stored = await (await _store(tenant_id, storage)).put(profile, updated_by=updated_by)
    await request_rebuild(tenant_id, storage)
    return stored


async def get_profile(tenant_id: str, name: str, storage: Storage | None = None) -> Profile | None:
    return await (await _store(tenant_id, storage)).get(name)


async def delete_profile(tenant_id: str, name: str, storage: Storage | None = None) -> bool:
    """True when it existed; a rebuild without it is queued."""
    deleted = await (await _store(tenant_id, storage)).delete(name)
    if deleted:
        await request_rebuild(tenant_id, storage)
    return deleted


async def list_profiles(
    tenant_id: str, *, size: int, after: str | None, storage: Storage | None = None
) -> ProfilesPage:
    return await (await _store(tenant_id, storage)).page(size, after)


async def rebuild_resolved(
    tenant_id: str, storage: Storage | None = None, *, changed: bool = True
) -> RebuildState:
    """Ask for a rebuild of who gets which profile (after group discovery; queued, returns at
    once); without `changed` only re-queue a rebuild still owed whose job died."""
    return await request_rebuild(tenant_id, storage, changed=changed)


async def applied_profile(
    tenant_id: str, member_ids: list[str | None], storage: Storage | None = None
) -> Resolution | None:
    """The profile a bundle applies: the best of the members' rows (one point read each)."""
    return best(await lookup(tenant_id, [m for m in member_ids if m], storage))


async def explain(
    tenant_id: str,
    *,
    device_object_id: str | None,
    user_id: str | None,
    storage: Storage | None = None,
) -> dict[str, Any]:
    """`GET /api/profiles/resolve`: which profile applies, through which groups, and whether
    the resolved table has caught up with the last change."""
    storage = storage or get_storage()
    state = await rebuild_state(tenant_id, storage)  # also the generation: no cached pointer
    members = [m for m in (device_object_id, user_id) if m]
    found = await lookup(tenant_id, members, storage, generation=state.current)
    chosen = best(found)
    names = await _group_names(tenant_id, {g for r in found for g in r.path}, storage)

    def view(resolution: Resolution) -> dict[str, Any]:
        return {
            "memberId": resolution.member_id,
            "memberType": resolution.member_type,
            "profile": resolution.profile,
            "priority": resolution.priority,
            "groupId": resolution.group_id,
            "groupPath": [{"groupId": g, "displayName": names.get(g)} for g in resolution.path],
        }

    return {
        "profile": chosen.profile if chosen else DEFAULT_PROFILE,
        "matchedBy": chosen.member_type if chosen else None,
        "overrides": chosen.overrides.as_json() if chosen else {},
        "candidates": [view(r) for r in sorted(found, key=lambda r: r.rank)],
        "upToDate": state.up_to_date,
    }


async def _group_names(
    tenant_id: str, group_ids: set[str], storage: Storage
) -> dict[str, str | None]:
    """Display names from `AadGroups` (point reads: a path is a few groups long)."""
    table = await storage.table(AAD_GROUPS)

    async def name(group_id: str) -> tuple[str, str | None]:
        try:
            async with translate_errors():
                row = await table.get_entity(tenant_id, group_id, select=["displayName"])
        except ResourceNotFoundError:  # a group not discovered (yet): no name
            return group_id, None
        return group_id, row.get("displayName")

    return dict(await asyncio.gather(*(name(g) for g in group_ids)))
