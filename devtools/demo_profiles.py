"""`make run` demo: Entra groups in the demo Graph and two install profiles that target them.

The demo device sits three levels down (`Demo Kiosks` > `Demo Kiosks Europe` > `Demo Kiosks
Berlin` > device); `Demo Sales` holds the first demo users. The profile `kiosks` sends kiosks to
another CMG and site, `sales` gives Sales a larger client cache. Fixed group ids, so README's
commands work on every machine.
"""

from __future__ import annotations

from typing import Final

from devtools.fakes.graph import FakeGraph
from shared.profiles import Overrides, Profile, save_profile
from shared.storage import Storage

KIOSKS: Final = "6f1d2c3b-0a9e-4d8c-8b7a-0123456789a1"
KIOSKS_EUROPE: Final = "6f1d2c3b-0a9e-4d8c-8b7a-0123456789a2"
KIOSKS_BERLIN: Final = "6f1d2c3b-0a9e-4d8c-8b7a-0123456789a3"
SALES: Final = "6f1d2c3b-0a9e-4d8c-8b7a-0123456789b1"
SALES_USERS: Final = 25

DEMO_PROFILES: Final = (
    Profile(
        "kiosks",
        KIOSKS,
        10,
        Overrides(
            ccm_hostname="KIOSKCMG.CLOUDAPP.NET/CCM_Proxy_MutualAuth/72186325152220500",
            site_code="KSK",
            properties=(("SMSCACHESIZE", "2048"),),
        ),
    ),
    Profile(
        "sales",
        SALES,
        20,
        Overrides(
            management_point="https://mp-sales.contoso.com",
            properties=(("SMSCACHEFLAGS", "PERCENTFREEDISKSPACE"), ("SMSCACHESIZE", "20")),
        ),
    ),
)


def add_demo_groups(graph: FakeGraph, device_object_id: str) -> list[str]:
    """The demo groups, nested, with the demo device and some users; lines for the console."""
    graph.add_group(
        "Demo Kiosks Berlin", members={device_object_id: "device"}, group_id=KIOSKS_BERLIN
    )
    graph.add_group("Demo Kiosks Europe", members={KIOSKS_BERLIN: "group"}, group_id=KIOSKS_EUROPE)
    graph.add_group("Demo Kiosks", members={KIOSKS_EUROPE: "group"}, group_id=KIOSKS)
    users = graph.user_ids()[:SALES_USERS]
    graph.add_group("Demo Sales", members=dict.fromkeys(users, "user"), group_id=SALES)
    return [
        "  groups: Demo Kiosks > Demo Kiosks Europe > Demo Kiosks Berlin > the demo device; "
        f"Demo Sales ({SALES_USERS} users, e.g. {users[0]})",
    ]


async def seed_demo_profiles(storage: Storage, tenant_id: str) -> None:
    """The two example profiles (replaced, so a restart keeps them as documented)."""
    for profile in DEMO_PROFILES:
        await save_profile(tenant_id, profile, updated_by="demo", storage=storage)
