"""Install profiles directly: validation (no storage), then resolution against Azurite with
memberships written as group discovery writes them, and once through real group discovery
from the loopback Graph (the run asks for the rebuild; the tests run the queued job directly,
as the queue invocation would)."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import pytest
from azure.data.tables import UpdateMode
from hypothesis import given, settings
from hypothesis import strategies as st

from devtools.fakes.identity import FakeManagedIdentity
from shared.bundles import CcmsetupCommand
from shared.discovery import run_discovery
from shared.errors import BadRequest, ConfigurationProblem
from shared.names import AAD_GROUP_MEMBERS
from shared.profiles import (
    PROPERTY_CHECKS,
    Overrides,
    Profile,
    applied_profile,
    check_name,
    delete_profile,
    explain,
    list_profiles,
    parse_profile,
    parse_resolve_query,
    rebuild_resolved,
    rebuild_state,
    run_rebuild_job,
    save_profile,
)
from shared.settings import Settings
from shared.storage import Storage
from tests.bundles.windows_argv import split_windows_command_line
from tests.discovery.conftest import config_for, make_graph
from tests.support.settings import product_env

GROUP = "0b0e2a54-2f0a-4d5e-9a55-6c1f0c6a1c01"


def errors_of(body: dict[str, Any]) -> dict[str, str]:
    with pytest.raises(BadRequest) as refused:
        parse_profile("cmg-west", body)
    return refused.value.errors


# -- validation ---------------------------------------------------------------------------------
def test_a_full_profile_is_accepted_and_normalised() -> None:
    profile = parse_profile(
        "cmg-west",
        {
            "groupId": GROUP.upper(),
            "priority": 10,
            "ccmHostname": "WEST.CLOUDAPP.NET/CCM_Proxy_MutualAuth/72186325152220500",
            "siteCode": "wst",
            "managementPoint": "https://mp.west.contoso.com",
            "source": "C:\\CM Client",
            "noCrlCheck": False,
            "properties": {"smscachesize": "10240", "SMSCACHEFLAGS": "percentfreediskspace"},
        },
    )
    assert profile.group_id == GROUP
    assert profile.overrides.site_code == "WST"
    assert profile.overrides.properties == (
        ("SMSCACHEFLAGS", "PERCENTFREEDISKSPACE"),
        ("SMSCACHESIZE", "10240"),
    )


def test_every_bad_field_is_named_at_once() -> None:
    errors = errors_of(
        {
            "groupId": "not-a-guid",
            "priority": True,
            "ccmHostname": "https://cmg.contoso.com",
            "siteCode": "SMS",
            "managementPoint": "mp",
            "source": "https://dp/share",
            "noCrlCheck": "yes",
            "color": "blue",
        }
    )
    assert set(errors) == {
        "groupId",
        "priority",
        "ccmHostname",
        "siteCode",
        "managementPoint",
        "source",
        "noCrlCheck",
        "color",
    }


@pytest.mark.parametrize(
    ("name", "value", "reason"),
    [
        ("AADTENANTID", "72f988bf-86f1-41af-91ab-2d7cd011db47", "tenant"),
        ("aadresourceuri", "https://evil", "tenant"),
        ("SMSSITECODE", "ABC", "siteCode"),
        ("SMSSIGNCERT", "C:\\x.cer", "not an allowed"),
        ("SMSCACHESIZE", "10 AADTENANTID=evil", "whole number"),
        ("SMSCACHEDIR", 'C:\\cache" /mp:evil', "folder"),
        ("CCMLOGLEVEL", "4", "0 to 3"),
        ("FSP", "fsp&calc", "DNS"),
    ],
)
def test_properties_outside_the_allow_list_or_with_bad_values_are_refused(
    name: str, value: str, reason: str
) -> None:
    errors = errors_of({"groupId": GROUP, "priority": 1, "properties": {name: value}})
    assert list(errors) == [f"properties.{name}"]
    assert reason in errors[f"properties.{name}"]


@pytest.mark.parametrize("name", ["default", "resolve", "", "-x", "a b", "x" * 65, "a/b"])
def test_reserved_and_malformed_names_are_refused(name: str) -> None:
    with pytest.raises(BadRequest) as refused:
        check_name(name)
    assert "name" in refused.value.errors


_TEXT = st.text(st.characters(codec="utf-8"), max_size=40)
_VALUES = st.one_of(
    _TEXT,
    st.integers(-5, 70000).map(str),
    st.sampled_from(["TRUE", "false", "C:\\cache", "contoso.com", "NOWINS", "RPMU", "PR100004"]),
)
_BODIES = st.fixed_dictionaries(
    {"groupId": st.one_of(st.just(GROUP), _TEXT), "priority": st.integers(-1, 2_000_000)},
    optional={
        "ccmHostname": st.one_of(_TEXT, st.just("CMG.CLOUDAPP.NET/CCM_Proxy_ServerAuth/1")),
        "siteCode": st.one_of(_TEXT, st.just("XYZ")),
        "managementPoint": _TEXT,
        "source": st.one_of(_TEXT, st.just("\\\\server\\share$\\client")),
        "noCrlCheck": st.one_of(st.booleans(), _TEXT),
        "properties": st.dictionaries(
            st.one_of(st.sampled_from(sorted(PROPERTY_CHECKS)), _TEXT), _VALUES, max_size=4
        ),
    },
)
_SETTINGS = Settings.from_env(product_env("UseDevelopmentStorage=true"))


@settings(max_examples=150, deadline=None)
@given(body=_BODIES)
def test_any_body_is_a_profile_or_a_400_and_never_breaks_the_command_line(
    body: dict[str, Any],
) -> None:
    errors: dict[str, str] = {}
    try:
        parsed = parse_profile("fuzz", body)
    except BadRequest as refused:
        errors = refused.errors
    if errors:
        return  # refused, naming the fields
    command = CcmsetupCommand.from_settings(_SETTINGS, parsed.overrides)
    argv = split_windows_command_line(command.command_line())
    assert argv == ["ccmsetup.exe", *command.arguments()]
    assert Overrides.deserialize(parsed.overrides.serialize()) == parsed.overrides


def test_a_profile_changes_only_what_it_sets_and_never_the_tenant() -> None:
    settings = Settings.from_env(product_env("UseDevelopmentStorage=true"))
    overrides = Overrides(site_code="WST", no_crl_check=True, properties=(("SMSCACHESIZE", "1"),))
    command = CcmsetupCommand.from_settings(settings, overrides)
    argv = split_windows_command_line(command.command_line())
    assert "/NoCrlCheck" in argv
    assert "SMSSiteCode=WST" in argv
    assert "SMSCACHESIZE=1" in argv
    base = CcmsetupCommand.from_settings(settings).properties
    assert command.properties["CCMHOSTNAME"] == base["CCMHOSTNAME"]
    assert {k: v for k, v in command.properties.items() if k.startswith("AAD")} == {
        k: v for k, v in base.items() if k.startswith("AAD")
    }


# -- resolution over the discovered tables ------------------------------------------------------
def guid() -> str:
    return str(uuid.uuid4())


async def add_members(storage: Storage, group: str, members: dict[str, str]) -> None:
    table = await storage.table(AAD_GROUP_MEMBERS)
    for member, kind in members.items():
        row = {"PartitionKey": group, "RowKey": member, "memberType": kind, "isDeleted": False}
        await table.upsert_entity(row, mode=UpdateMode.REPLACE)


async def remove_member(storage: Storage, group: str, member: str) -> None:
    table = await storage.table(AAD_GROUP_MEMBERS)
    row = {"PartitionKey": group, "RowKey": member, "isDeleted": True}
    await table.upsert_entity(row, mode=UpdateMode.MERGE)


def profile(name: str, group: str, priority: int, site: str) -> Profile:
    return Profile(name, group, priority, Overrides(site_code=site))


async def run_job(tenant: str, storage: Storage) -> None:
    """What the queued job message's invocation does; then the table is up to date."""
    assert not (await rebuild_state(tenant, storage)).up_to_date  # a change is waiting
    assert await run_rebuild_job(tenant, storage, budget_seconds=60) == "done"
    assert (await rebuild_state(tenant, storage)).up_to_date


async def test_nesting_priority_ties_and_removal_decide_the_profile(storage: Storage) -> None:
    tenant = guid()
    top, middle, bottom, other, cycle = guid(), guid(), guid(), guid(), guid()
    device, user, loner = guid(), guid(), guid()
    await add_members(storage, top, {middle: "group"})
    await add_members(storage, middle, {bottom: "group", cycle: "group"})
    await add_members(storage, cycle, {top: "group"})  # a cycle ends the walk, not the rebuild
    await add_members(storage, bottom, {device: "device"})
    await add_members(storage, other, {device: "device", user: "user", loner: "user"})
    await save_profile(
        tenant, profile("nested", top, 5, "TOP"), updated_by="admin", storage=storage
    )
    await save_profile(
        tenant, profile("zeta", other, 7, "ZET"), updated_by="admin", storage=storage
    )
    await save_profile(
        tenant, profile("alpha", other, 7, "ALP"), updated_by="admin", storage=storage
    )
    await run_job(tenant, storage)

    applied = await applied_profile(tenant, [device, None], storage)
    assert applied is not None
    assert (applied.profile, applied.path) == ("nested", (top, middle, bottom))
    tie = await applied_profile(tenant, [loner], storage)
    assert tie is not None
    assert tie.profile == "alpha"  # equal priority: the lower name, on every rebuild
    both = await applied_profile(tenant, [guid(), user], storage)
    assert both is not None
    assert both.profile == "alpha"

    await remove_member(storage, middle, bottom)
    assert not (await rebuild_resolved(tenant, storage)).up_to_date
    await run_job(tenant, storage)
    after = await applied_profile(tenant, [device], storage)
    assert after is not None
    assert after.profile == "alpha"
    await delete_profile(tenant, "alpha", storage)
    await delete_profile(tenant, "zeta", storage)
    await run_job(tenant, storage)
    assert await applied_profile(tenant, [device, user, loner], storage) is None
    answer = await explain(tenant, device_object_id=device, user_id=user, storage=storage)
    assert answer["profile"] == "default"
    assert answer["upToDate"] is True


async def test_concurrent_rebuilds_leave_one_consistent_table(storage: Storage) -> None:
    tenant, group = guid(), guid()
    members = {guid(): "user" for _ in range(120)}
    await add_members(storage, group, members)
    await save_profile(tenant, profile("all", group, 1, "ALL"), updated_by="admin", storage=storage)
    await asyncio.gather(*(rebuild_resolved(tenant, storage) for _ in range(5)))
    jobs = [run_rebuild_job(tenant, storage, budget_seconds=60) for _ in range(3)]
    statuses = await asyncio.gather(*jobs, rebuild_resolved(tenant, storage))
    assert "done" in statuses
    if not (await rebuild_state(tenant, storage)).up_to_date:
        # The last request came after the jobs' last look: it queued a job of its own.
        assert await run_rebuild_job(tenant, storage, budget_seconds=60) == "done"
    found = await asyncio.gather(*(applied_profile(tenant, [m], storage) for m in members))
    assert {f.profile if f else None for f in found} == {"all"}
    answer = await explain(
        tenant, device_object_id=None, user_id=next(iter(members)), storage=storage
    )
    assert answer["upToDate"] is True


async def test_group_discovery_rebuilds_the_resolved_profiles(
    storage: Storage, managed_identity_env: FakeManagedIdentity, tenant: str
) -> None:
    with make_graph(managed_identity_env, 10, group_page_size=3, member_chunk=2) as graph:
        users = graph.user_ids()
        device = guid()
        leaf = graph.add_group("Leaf", members={device: "device", users[0]: "user"})
        middle = graph.add_group("Middle", members={leaf: "group"})
        top = graph.add_group("Top", members={middle: "group"})
        flat = graph.add_group("Flat", members={device: "device"})
        await save_profile(
            tenant, profile("deep", top, 1, "DEP"), updated_by="admin", storage=storage
        )
        await save_profile(
            tenant, profile("flat", flat, 2, "FLT"), updated_by="admin", storage=storage
        )
        config = config_for(graph, tenant, group_scope="all")

        await run_discovery("full", "timer", config, resource="groups", storage=storage)
        await run_job(tenant, storage)
        first = await applied_profile(tenant, [device], storage)
        assert first is not None
        assert (first.profile, first.path) == ("deep", (top, middle, leaf))

        graph.remove_member(middle, leaf)  # removed in Entra ID
        await run_discovery("delta", "timer", config, resource="groups", storage=storage)
        await run_job(tenant, storage)
        second = await applied_profile(tenant, [device, users[0]], storage)
        assert second is not None
        assert second.profile == "flat"
        assert await applied_profile(tenant, [users[0]], storage) is None


def test_the_device_clients_accept_every_property_a_profile_may_set() -> None:
    """The reference clients refuse unknown properties: they must know the profiles' ones."""
    from client.cmbootstrap_client import ALLOWED_PROPERTIES
    from shared.profiles import PROPERTY_CHECKS
    from tests.support.devhost import REPO_ROOT

    assert set(PROPERTY_CHECKS) <= set(ALLOWED_PROPERTIES)
    script = (REPO_ROOT / "client" / "Invoke-CMBootstrap.ps1").read_text()
    listed = re.search(r"\$AllowedProperties = @\(([^)]*)\)", script)
    assert listed is not None
    assert set(PROPERTY_CHECKS) <= set(re.findall(r"'([A-Za-z]+)'", listed.group(1)))


async def test_profiles_page_by_name_with_next(storage: Storage) -> None:
    tenant = guid()
    for name in ("c", "a", "b"):
        await save_profile(
            tenant, profile(name, guid(), 1, "ABC"), updated_by="oid", storage=storage
        )
    first = await list_profiles(tenant, size=2, after=None, storage=storage)
    assert [p.name for p in first.profiles] == ["a", "b"]
    assert first.next == "b"
    rest = await list_profiles(tenant, size=2, after=first.next, storage=storage)
    assert ([p.name for p in rest.profiles], rest.next) == (["c"], None)
    assert rest.profiles[0].updated_by == "oid"
    assert rest.profiles[0].updated_at is not None


def test_a_stored_profile_that_no_longer_validates_is_never_applied() -> None:
    with pytest.raises(ConfigurationProblem) as refused:
        Overrides.deserialize('{"siteCode": "S&S", "properties": {"SMSSIGNCERT": "x"}}')
    assert "properties.SMSSIGNCERT, siteCode" in refused.value.detail


@pytest.mark.parametrize(
    ("device", "user", "named"),
    [
        (None, None, "deviceId"),
        ("x", None, "deviceId"),
        (None, "y", "userId"),
        (GROUP, "y", "userId"),
    ],
)
def test_resolve_needs_a_device_or_user_guid(
    device: str | None, user: str | None, named: str
) -> None:
    with pytest.raises(BadRequest) as refused:
        parse_resolve_query(device, user)
    assert list(refused.value.errors) == [named]
