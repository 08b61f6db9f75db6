"""Install profiles through the development host, against the loopback Graph and Entra issuer:
group discovery feeds the resolved table, an admin PUTs profiles, a proven device (with a
user token, `device+user`) gets the profile of a group three levels up, and after Entra ID
drops a membership the next group delta gives it the other profile. The rebuild runs as a job
on discovery-continue, which the host polls: the test waits for `upToDate` in the resolve
answer, as an admin would. One host for the module."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import jwt
import pytest
from jsonschema import Draft202012Validator

from devhost.azurite import StorageAccount
from devtools.devices import DeviceIdentity
from devtools.fakes.entra import EntraIssuer
from devtools.fakes.identity import FakeManagedIdentity
from shared.names import BUNDLE_ISSUANCE
from shared.openapi import openapi_document
from shared.storage import Storage
from tests.discovery.conftest import make_graph, run_rows, wait_until
from tests.support.devhost import DevHostProcess
from tests.support.settings import TENANT_ID, product_env
from tests.support.storage import storage_on

PUBLIC_HOST = "localhost:8443"
NONCE = "n0nce-profiles"


@pytest.fixture(scope="module")
def own_account(new_account: Callable[[], StorageAccount]) -> StorageAccount:
    """Its own storage account: the host polls discovery-continue."""
    return new_account()


def documented(body: Any, schema: str) -> Any:
    """`body` as the OpenAPI document describes the schema `schema`."""
    components = openapi_document()["components"]
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema}", "components": components},
        format_checker=Draft202012Validator.FORMAT_CHECKER,
    )
    validator.validate(body)
    return body


async def groups_runs_done(storage: Storage, count: int) -> bool:
    runs = [r for r in await run_rows(storage, TENANT_ID) if r.get("resource") == "groups"]
    return len(runs) >= count and all(r["status"] == "succeeded" for r in runs)


async def test_a_nested_group_decides_the_bundle_and_a_removal_changes_it(
    own_account: StorageAccount,
    identity: FakeManagedIdentity,
) -> None:
    device, user = DeviceIdentity.generate(), str(uuid.uuid4())
    with EntraIssuer() as issuer, make_graph(identity, 5) as graph:
        device_object_id = graph.register_device(
            device.device_id, device.alternative_security_ids()
        )
        leaf = graph.add_group("Kiosks Berlin", members={device_object_id: "device"})
        middle = graph.add_group("Kiosks Germany", members={leaf: "group"})
        top = graph.add_group("Kiosks", members={middle: "group"})
        sales = graph.add_group("Sales", members={user: "user"})
        env = product_env(
            own_account.connection_string,
            AAD_AUTHORITY_HOST=issuer.authority_host,
            GRAPH_BASE_URL=graph.graph_base_url,
            WEBSITE_HOSTNAME=PUBLIC_HOST,
            BOOTSTRAP_AUTH="device+user",
            DISCOVERY_GROUPS="all",
            **identity.environment(),
        )
        admin = {"Authorization": f"Bearer {issuer.mint_admin_token()}"}
        async with (
            storage_on(own_account) as storage,
            httpx.AsyncClient(timeout=30) as http,
        ):
            with DevHostProcess(env) as host:

                async def trigger(function: str) -> None:
                    url = host.url(f"/admin/functions/{function}")
                    answer = await http.post(url, json={"input": ""})
                    assert answer.status_code == 202, answer.text

                async def bundle() -> dict[str, Any]:
                    token = issuer.mint_access_token(oid=user)
                    proof = device.proof(
                        "GET", f"http://{PUBLIC_HOST}/api/bundle", nonce=NONCE, token=token
                    )
                    answer = await http.get(
                        host.url("/api/bundle"),
                        params={"deviceId": device.device_id, "nonce": NONCE},
                        headers={"Device-Proof": proof, "Authorization": f"Bearer {token}"},
                    )
                    assert answer.status_code == 200, answer.text
                    claims: dict[str, Any] = jwt.decode(
                        answer.text, options={"verify_signature": False}
                    )
                    return claims

                async def up_to_date() -> bool:
                    answer = await http.get(
                        host.url("/api/profiles/resolve"), params={"userId": user}, headers=admin
                    )
                    assert answer.status_code == 200, answer.text
                    return bool(answer.json()["upToDate"])

                async def put(name: str, body: object, **headers: str) -> httpx.Response:
                    return await http.put(
                        host.url(f"/api/profiles/{name}"), json=body, headers=admin | headers
                    )

                kiosk = {"groupId": top, "priority": 10, "siteCode": "KSK"}
                wrong = await put("kiosks", kiosk | {"properties": {"AADTENANTID": TENANT_ID}})
                assert wrong.status_code == 400
                assert [e["field"] for e in wrong.json()["errors"]] == ["properties.AADTENANTID"]
                gzip = await put("kiosks", kiosk, **{"Content-Encoding": "gzip"})
                assert gzip.status_code == 415
                stored = await put("kiosks", kiosk)
                assert stored.status_code == 200, stored.text
                assert documented(stored.json(), "Profile")["siteCode"] == "KSK"
                assert stored.json()["upToDate"] is False  # the rebuild is queued, not run
                sales_profile = {"groupId": sales, "priority": 20, "siteCode": "SLS"}
                assert (await put("sales", sales_profile)).status_code == 200
                await trigger("discovery_full")
                await wait_until(lambda: groups_runs_done(storage, 1), 20, "group discovery")
                await wait_until(up_to_date, 20, "the profiles rebuild")

                claims = await bundle()
                assert claims["profile"] == "kiosks"
                assert claims["ccmsetup"]["properties"]["SMSSiteCode"] == "KSK"
                resolve = await http.get(
                    host.url("/api/profiles/resolve"),
                    params={"deviceId": device.device_id, "userId": user},
                    headers=admin,
                )
                assert resolve.status_code == 200, resolve.text
                why = documented(resolve.json(), "ProfileResolution")
                assert (why["profile"], why["matchedBy"]) == ("kiosks", "device")
                path = [step["displayName"] for step in why["candidates"][0]["groupPath"]]
                assert path == ["Kiosks", "Kiosks Germany", "Kiosks Berlin"]
                assert [c["profile"] for c in why["candidates"]] == ["kiosks", "sales"]

                graph.remove_member(middle, leaf)  # an admin edits the group in Entra ID
                await trigger("discovery_delta")
                await wait_until(lambda: groups_runs_done(storage, 2), 20, "the group delta")
                await wait_until(up_to_date, 20, "the profiles rebuild after the delta")

                claims = await bundle()
                assert claims["profile"] == "sales"  # now only the user's group matches
                assert claims["ccmsetup"]["properties"]["SMSSiteCode"] == "SLS"
                table = await storage.table(BUNDLE_ISSUANCE)
                row = await table.get_entity(TENANT_ID, claims["jti"])
                assert row["profile"] == "sales"
                listed = await http.get(host.url("/api/profiles"), headers=admin)
                page = documented(listed.json(), "ProfilesPage")
                assert [p["name"] for p in page["profiles"]] == ["kiosks", "sales"]
