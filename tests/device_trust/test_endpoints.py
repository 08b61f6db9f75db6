"""`/api/bundle` and `/api/reports` with device proofs, through the development host: two
instances in `device` mode and one in `device+user` mode on one Azurite (as instances behind one
host name share WEBSITE_HOSTNAME and storage), the loopback Graph with `/devices`, the managed
identity and Entra issuer. Every mode serves a valid caller; bad proofs are refused with the
contract's status and leave no audit row and no recorded report."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest

from devhost.azurite import StorageAccount
from devtools.devices import DROP, DeviceIdentity, new_rsa_key, unsigned_proof
from devtools.fakes.entra import EntraIssuer
from devtools.fakes.graph import FakeGraph
from devtools.fakes.identity import FakeManagedIdentity
from shared.auth import MAX_PROOF_BYTES
from shared.names import BLOCKED_DEVICES, BUNDLE_ISSUANCE, DEVICE_STATUS, DEVICE_STATUS_HISTORY
from shared.storage import Storage
from tests.support.devhost import DevHostProcess
from tests.support.keys import write_signing_key
from tests.support.settings import TENANT_ID, product_env
from tests.support.storage import storage_on

NONCE = "n0nce-abcdef"
# The name devices use for the app, in front of every instance (Azure sets WEBSITE_HOSTNAME so).
PUBLIC_HOST = "localhost:8443"
MODES_OF_HOSTS = ("device", "device", "device+user")
INVALID_PROOF = 'Device-Proof error="invalid_proof"'


@dataclass
class Site:
    """The app as devices see it: one public address, several instances behind it."""

    public_url: str  # what proofs name in htu (WEBSITE_HOSTNAME of every instance)
    device: DevHostProcess  # BOOTSTRAP_AUTH=device
    device2: DevHostProcess  # BOOTSTRAP_AUTH=device, another instance
    both: DevHostProcess  # BOOTSTRAP_AUTH=device+user
    storage: Storage
    graph: FakeGraph
    issuer: EntraIssuer
    http: httpx.AsyncClient

    def registered(self, **props: Any) -> DeviceIdentity:
        device = DeviceIdentity.generate()
        self.graph.register_device(device.device_id, device.alternative_security_ids(), **props)
        return device

    def bundle_proof(self, device: DeviceIdentity, **options: Any) -> str:
        options.setdefault("nonce", NONCE)
        return device.proof("GET", self.public_url + "/api/bundle", **options)

    async def get_bundle(
        self,
        host: DevHostProcess,
        device_id: str,
        proof: str | None,
        *,
        token: str | None = None,
        nonce: str = NONCE,
    ) -> httpx.Response:
        headers = {"Device-Proof": proof} if proof is not None else {}
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        params = {"deviceId": device_id, "nonce": nonce}
        return await self.http.get(host.url("/api/bundle"), params=params, headers=headers)

    async def post_report(
        self, host: DevHostProcess, body: bytes, proof: str | None, **headers: str
    ) -> httpx.Response:
        if proof is not None:
            headers["Device-Proof"] = proof
        headers["Content-Type"] = "application/json"
        return await self.http.post(host.url("/api/reports"), content=body, headers=headers)

    async def audit_rows(self, device_id: str) -> list[dict[str, Any]]:
        table = await self.storage.table(BUNDLE_ISSUANCE)
        query = "PartitionKey eq @tenant and sub eq @device"
        params = {"tenant": TENANT_ID, "device": device_id}
        return [dict(row) async for row in table.query_entities(query, parameters=params)]

    async def status_row(self, device_id: str) -> dict[str, Any] | None:
        table = await self.storage.table(DEVICE_STATUS)
        query = "PartitionKey eq @tenant and RowKey eq @device"
        params = {"tenant": TENANT_ID, "device": device_id}
        found = [dict(row) async for row in table.query_entities(query, parameters=params)]
        return found[0] if found else None

    async def history_rows(self, device_id: str) -> list[dict[str, Any]]:
        table = await self.storage.table(DEVICE_STATUS_HISTORY)
        query = "PartitionKey eq @device"
        rows = table.query_entities(query, parameters={"device": device_id})
        return [dict(row) async for row in rows]


def report_body(device_id: str, *, stage: str = "installed", minutes_ago: float = 1) -> bytes:
    moment = datetime.now(UTC) - timedelta(minutes=minutes_ago)
    body = {
        "reportId": str(uuid.uuid4()),
        "deviceId": device_id,
        "tenantId": TENANT_ID,
        "hostname": "PC01",
        "stage": stage,
        "azureAdJoined": True,
        "domainJoined": False,
        "ccmsetupExitCode": 0,
        "clientVersion": "5.00.9128.1000",
        "siteCode": "ABC",
        "reportedAt": moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    }
    return json.dumps(body).encode()


async def eventually(probe: Callable[[], Any], *, within: float, what: str) -> Any:
    """Poll `probe` (async) until truthy, bounded by `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        found = await probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.2)  # polling storage with a deadline, not synchronisation


@pytest.fixture(scope="module")
def own_account(new_account: Callable[[], StorageAccount]) -> StorageAccount:
    """This module's storage account: its hosts run the queue trigger, other tests' hosts must
    not."""
    return new_account()


@pytest.fixture(scope="module")
def signing_key_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("keys") / "bundle-signing.pem"
    write_signing_key(path)
    return path


@pytest.fixture(scope="module")
async def site(
    own_account: StorageAccount,
    entra_issuer: EntraIssuer,
    identity: FakeManagedIdentity,
    graph: FakeGraph,
    signing_key_file: Path,
) -> AsyncIterator[Site]:
    env = product_env(
        own_account.connection_string,
        AAD_AUTHORITY_HOST=entra_issuer.authority_host,
        GRAPH_BASE_URL=graph.graph_base_url,
        BUNDLE_SIGNING_KEY_FILE=str(signing_key_file),
        WEBSITE_HOSTNAME=PUBLIC_HOST,
        **identity.environment(),
    )
    hosts = [DevHostProcess(env | {"BOOTSTRAP_AUTH": mode}) for mode in MODES_OF_HOSTS]
    with contextlib.ExitStack() as stack:
        for host in hosts:
            stack.callback(host.__exit__, None, None, None)
        # Started side by side: each spends its start-up importing the app.
        with ThreadPoolExecutor(len(hosts)) as pool:
            list(pool.map(DevHostProcess.start, hosts))
        device, device2, both = hosts
        async with storage_on(own_account) as storage, httpx.AsyncClient(timeout=30) as http:
            yield Site(
                f"http://{PUBLIC_HOST}", device, device2, both, storage, graph, entra_issuer, http
            )


# -- every mode serves a valid caller -----------------------------------------------------------
async def test_device_mode_serves_a_proven_device_without_a_user(site: Site):
    device = site.registered()

    response = await site.get_bundle(site.device, device.device_id, site.bundle_proof(device))

    assert response.status_code == 200, response.text
    claims = jwt.decode(response.text, options={"verify_signature": False})
    assert claims["sub"] == device.device_id
    assert claims["tid"] == TENANT_ID
    assert "oid" not in claims
    [row] = await site.audit_rows(device.device_id)
    assert (row["auth"], row["certThumbprint"]) == ("device", device.thumbprint)
    assert "oid" not in row


async def test_device_plus_user_binds_the_token_to_the_proof(site: Site):
    device, oid = site.registered(), str(uuid.uuid4())
    token = site.issuer.mint_access_token(oid=oid)

    bound = site.bundle_proof(device, token=token)
    response = await site.get_bundle(site.both, device.device_id, bound, token=token)

    assert response.status_code == 200, response.text
    assert jwt.decode(response.text, options={"verify_signature": False})["oid"] == oid
    [row] = await site.audit_rows(device.device_id)
    assert (row["auth"], row["certThumbprint"], row["oid"]) == (
        "device+user",
        device.thumbprint,
        oid,
    )

    other_token = site.issuer.mint_access_token(oid=oid)
    refusals = {
        "no ath": (site.bundle_proof(device), token, 401),
        "ath of another token": (site.bundle_proof(device, token=other_token), token, 401),
        "no proof": (None, token, 401),
        "no token": (site.bundle_proof(device), None, 401),
        "token without DEVICE_SCOPE": (
            site.bundle_proof(
                device, token=(unscoped := site.issuer.mint_access_token(scp="openid"))
            ),
            unscoped,
            403,
        ),
    }
    for case, (proof, sent_token, status) in refusals.items():
        answer = await site.get_bundle(site.both, device.device_id, proof, token=sent_token)
        assert answer.status_code == status, (case, answer.text)
    assert len(await site.audit_rows(device.device_id)) == 1


async def test_device_mode_report_is_recorded_with_how_the_device_proved_itself(site: Site):
    device = site.registered()
    body = report_body(device.device_id)
    proof = device.proof("POST", site.public_url + "/api/reports", body=body)

    response = await site.post_report(site.device2, body, proof)

    assert response.status_code == 202, response.text
    status = await eventually(
        lambda: site.status_row(device.device_id), within=30, what="the status row"
    )
    assert (status["auth"], status["certThumbprint"]) == ("device", device.thumbprint)
    [history] = await site.history_rows(device.device_id)
    assert (history["auth"], history["certThumbprint"]) == ("device", device.thumbprint)


# -- the attack matrix ----------------------------------------------------------------------------
Attack = Callable[[Site], tuple[str, str | None]]  # (the request's deviceId, the proof)


def _another_devices_certificate(site: Site) -> tuple[str, str | None]:
    victim, attacker = site.registered(), DeviceIdentity.generate()
    proof = site.bundle_proof(
        attacker, claims={"deviceId": victim.device_id}, headers={"x5c": victim.x5c}
    )
    return victim.device_id, proof


def _not_registered(site: Site) -> tuple[str, str | None]:
    device = DeviceIdentity.generate()
    return device.device_id, site.bundle_proof(device)


def _registered_with_wrong_cn(site: Site) -> tuple[str, str | None]:
    device = DeviceIdentity.generate(common_name=str(uuid.uuid4()))
    site.graph.register_device(device.device_id, device.alternative_security_ids())
    return device.device_id, site.bundle_proof(device)


def _other_key_registered(site: Site) -> tuple[str, str | None]:
    device = DeviceIdentity.generate()
    earlier = DeviceIdentity.generate(device.device_id)
    site.graph.register_device(device.device_id, earlier.alternative_security_ids())
    return device.device_id, site.bundle_proof(device)


def _with(**options: Any) -> Attack:
    def attack(site: Site) -> tuple[str, str | None]:
        device = site.registered()
        return device.device_id, site.bundle_proof(device, **options)

    return attack


def _aged(seconds: int) -> Attack:
    """A proof whose iat is `seconds` from the moment it is sent."""

    def attack(site: Site) -> tuple[str, str | None]:
        device = site.registered()
        return device.device_id, site.bundle_proof(device, iat=int(time.time()) + seconds)

    return attack


def _registered(**props: Any) -> Attack:
    def attack(site: Site) -> tuple[str, str | None]:
        device = site.registered(**props)
        return device.device_id, site.bundle_proof(device)

    return attack


def _hand_made(alg: str, signature: bytes = b"") -> Attack:
    def attack(site: Site) -> tuple[str, str | None]:
        device = site.registered()
        claims = device.proof_claims("GET", site.public_url + "/api/bundle", nonce=NONCE)
        header = {"alg": alg, "typ": "cmboot-device-proof+jwt", "x5c": device.x5c}
        return device.device_id, unsigned_proof(header, claims, signature)

    return attack


def _two_certificates(site: Site) -> tuple[str, str | None]:
    device, other = site.registered(), DeviceIdentity.generate()
    return device.device_id, site.bundle_proof(device, headers={"x5c": device.x5c + other.x5c})


def _proof_for_another_device_id(site: Site) -> tuple[str, str | None]:
    device, other = site.registered(), site.registered()
    return other.device_id, site.bundle_proof(device)


def _instance_htu(site: Site) -> tuple[str, str | None]:
    device = site.registered()
    return device.device_id, device.proof("GET", site.device.url("/api/bundle"), nonce=NONCE)


def _no_proof(site: Site) -> tuple[str, str | None]:
    return site.registered().device_id, None


ATTACKS: dict[str, tuple[Attack, int]] = {
    "another device's certificate": (_another_devices_certificate, 401),
    "certificate not registered in Graph": (_not_registered, 401),
    "registered certificate with the wrong CN": (_registered_with_wrong_cn, 401),
    "another certificate registered for the device": (_other_key_registered, 401),
    "disabled device": (_registered(account_enabled=False), 403),
    "Workplace-only trust type": (_registered(trust_type="Workplace"), 403),
    "iat 6 minutes old": (_aged(-360), 401),
    "iat 6 minutes ahead": (_aged(+360), 401),
    "wrong htm": (_with(claims={"htm": "POST"}), 401),
    "wrong htu host": (_with(claims={"htu": "https://evil.example/api/bundle"}), 401),
    "wrong htu path": (_with(claims={"htu": f"http://{PUBLIC_HOST}/api/reports"}), 401),
    "htu of the instance, not the app": (_instance_htu, 401),
    "wrong nonce": (_with(nonce="another-nonce-1"), 401),
    "no nonce": (_with(claims={"nonce": DROP}), 401),
    "alg none": (_hand_made("none"), 401),
    "alg HS256": (_hand_made("HS256", b"\x00" * 32), 401),
    "two certificates in x5c": (_two_certificates, 401),
    "garbage x5c": (_with(headers={"x5c": ["bm90IGEgY2VydGlmaWNhdGU="]}), 401),
    "signed by a key other than the certificate's": (_with(signing_key=new_rsa_key()), 401),
    "oversized header": (_with(claims={"pad": "x" * MAX_PROOF_BYTES}), 401),
    "proof for another deviceId than requested": (_proof_for_another_device_id, 401),
    "other typ": (_with(headers={"typ": "JWT"}), 401),
    "crit header": (_with(headers={"crit": ["exp"]}), 401),
    "no proof at all": (_no_proof, 401),
}


@pytest.mark.parametrize("attack", list(ATTACKS))
async def test_bad_proofs_are_refused_and_nothing_is_issued(site: Site, attack: str):
    make, status = ATTACKS[attack]
    device_id, proof = make(site)

    response = await site.get_bundle(site.device, device_id, proof)

    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/problem+json")
    if status == 401:
        assert response.headers["WWW-Authenticate"] == INVALID_PROOF
    assert await site.audit_rows(device_id) == []


async def test_a_blocked_device_is_forbidden(site: Site):
    device = site.registered()
    blocked = await site.storage.table(BLOCKED_DEVICES)
    await blocked.create_entity(
        {"PartitionKey": TENANT_ID, "RowKey": device.device_id, "reason": "stolen"}
    )
    response = await site.get_bundle(site.device, device.device_id, site.bundle_proof(device))
    assert response.status_code == 403
    assert await site.audit_rows(device.device_id) == []


async def test_a_proof_replayed_on_a_second_instance_is_refused(site: Site):
    device = site.registered()
    proof = site.bundle_proof(device)

    first = await site.get_bundle(site.device, device.device_id, proof)
    replayed = await site.get_bundle(site.device2, device.device_id, proof)

    assert first.status_code == 200, first.text
    assert replayed.status_code == 401
    assert replayed.headers["WWW-Authenticate"] == INVALID_PROOF
    assert len(await site.audit_rows(device.device_id)) == 1


async def test_graph_down_is_503_with_retry_after(site: Site):
    device = site.registered()  # never looked up before: nothing cached
    site.graph.fail_next(503, retry_after=1, on="devices")

    response = await site.get_bundle(site.device, device.device_id, site.bundle_proof(device))

    assert response.status_code == 503, response.text
    assert int(response.headers["Retry-After"]) > 0
    assert await site.audit_rows(device.device_id) == []


async def test_a_report_cannot_move_another_devices_status(site: Site):
    url = site.public_url + "/api/reports"
    victim, attacker = site.registered(), site.registered()
    installed = report_body(victim.device_id, minutes_ago=2)
    accepted = await site.post_report(
        site.device, installed, victim.proof("POST", url, body=installed)
    )
    assert accepted.status_code == 202, accepted.text
    before = await eventually(lambda: site.status_row(victim.device_id), within=30, what="status")

    failed = report_body(victim.device_id, stage="failed", minutes_ago=0)
    refusals = {
        "attacker's proof on the victim's report": (
            attacker.proof("POST", url, body=failed),
            403,
        ),
        "victim's proof over another body": (
            victim.proof("POST", url, body=report_body(victim.device_id)),
            401,
        ),
        "a bundle proof": (site.bundle_proof(victim), 401),
        "no proof": (None, 401),
    }
    for case, (proof, status) in refusals.items():
        response = await site.post_report(site.device, failed, proof)
        assert response.status_code == status, (case, response.text)

    # A report sent after the refused ones is recorded: had one of them been queued, so would it.
    own = report_body(attacker.device_id)
    sentinel = await site.post_report(site.device2, own, attacker.proof("POST", url, body=own))
    assert sentinel.status_code == 202
    await eventually(lambda: site.status_row(attacker.device_id), within=30, what="sentinel")
    after = await site.status_row(victim.device_id)
    assert after is not None
    assert (after["stage"], after["reportCount"]) == ("installed", 1)
    assert before["reportId"] == after["reportId"]
    assert len(await site.history_rows(victim.device_id)) == 1
