"""Proving a device end to end in one process: the proof, single use, the device's Entra ID record
read from the loopback Graph through msgraph-sdk (with the managed identity), BlockedDevices.
Clocks are injected, so the 60 s cache is tested without waiting for it."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from azure.identity.aio import DefaultAzureCredential

from devtools.devices import DeviceIdentity
from devtools.fakes.graph import FakeGraph
from devtools.fakes.identity import FakeManagedIdentity
from shared.auth import (
    DeviceAuthenticator,
    GraphDeviceDirectory,
    ProofRequest,
    ProofVerifier,
    TableReplayGuard,
    registered_key_matches,
    window_key,
)
from shared.errors import Forbidden, InvalidDeviceProof, ProblemError, ServiceUnavailable
from shared.graph import GraphClient
from shared.names import DEVICE_PROOFS
from shared.storage import Storage

HOST = "boot.contoso.com"
URL = f"https://{HOST}/api/bundle"
NONCE = "n0nce-abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class MemoryReplayGuard:
    """Single use within one process: enough where the table is not what is tested."""

    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()

    async def first_use(self, device_id: str, jti: str, issued_at: int) -> bool:
        key = (device_id, jti)
        fresh = key not in self.seen
        self.seen.add(key)
        return fresh


class Harness:
    def __init__(self, graph: FakeGraph, client: GraphClient) -> None:
        self.graph = graph
        self.clock = Clock()
        self.blocked: set[str] = set()
        self.directory = GraphDeviceDirectory(client, clock=self.clock)

        async def is_blocked(device_id: str) -> bool:
            return device_id in self.blocked

        self.authenticator = DeviceAuthenticator(
            verifier=ProofVerifier([HOST], clock=self.clock),
            replay=MemoryReplayGuard(),
            directory=self.directory,
            trust_types={"AzureAd", "ServerAd"},
            is_blocked=is_blocked,
        )

    def registered(self, **props: Any) -> DeviceIdentity:
        device = DeviceIdentity.generate()
        self.graph.register_device(device.device_id, device.alternative_security_ids(), **props)
        return device

    async def prove(self, device: DeviceIdentity, **options: Any) -> str:
        proof = device.proof("GET", URL, nonce=NONCE, iat=int(self.clock.now), **options)
        request = ProofRequest("GET", URL, device_id=device.device_id, nonce=NONCE)
        proven = await self.authenticator.prove(proof, request)
        return proven.device_id

    async def refusal(self, device: DeviceIdentity, **options: Any) -> ProblemError:
        with pytest.raises(ProblemError) as caught:
            await self.prove(device, **options)
        return caught.value


@pytest.fixture
async def harness(
    graph: FakeGraph, managed_identity_env: FakeManagedIdentity
) -> AsyncIterator[Harness]:
    credential = DefaultAzureCredential()
    client = GraphClient(graph.graph_base_url, credential, max_retries=0)
    try:
        yield Harness(graph, client)
    finally:
        await client.close()
        await credential.close()


async def test_a_registered_device_is_proven_with_its_certificate(harness: Harness):
    device = harness.registered()
    assert await harness.prove(device) == device.device_id


async def test_a_replayed_proof_is_refused(harness: Harness):
    device = harness.registered()
    proof = device.proof("GET", URL, nonce=NONCE, iat=int(harness.clock.now))
    request = ProofRequest("GET", URL, device_id=device.device_id, nonce=NONCE)
    await harness.authenticator.prove(proof, request)
    with pytest.raises(InvalidDeviceProof, match="used before"):
        await harness.authenticator.prove(proof, request)


@pytest.mark.parametrize(
    ("setup", "status", "reason"),
    [
        ("unregistered", 401, "knows no device"),
        ("other certificate registered", 401, "not registered"),
        ("disabled", 403, "disabled"),
        ("Workplace", 403, "trust type"),
        ("blocked", 403, "blocked"),
        ("no proof", 401, "required"),
    ],
)
async def test_devices_entra_id_does_not_vouch_for_are_refused(
    harness: Harness, setup: str, status: int, reason: str
):
    if setup == "unregistered":
        device = DeviceIdentity.generate()
    elif setup == "other certificate registered":
        device = DeviceIdentity.generate()
        enrolled_before = DeviceIdentity.generate(device.device_id)
        harness.graph.register_device(device.device_id, enrolled_before.alternative_security_ids())
    elif setup == "disabled":
        device = harness.registered(account_enabled=False)
    elif setup == "Workplace":
        device = harness.registered(trust_type="Workplace")
    else:
        device = harness.registered()
        harness.blocked.add(device.device_id)
    if setup == "no proof":
        with pytest.raises(InvalidDeviceProof, match=reason):
            await harness.authenticator.prove(None, ProofRequest("GET", URL))
        return
    refused = await harness.refusal(device)
    assert (refused.status, type(refused)) == (
        status,
        InvalidDeviceProof if status == 401 else Forbidden,
    )
    assert reason in refused.detail


async def test_a_disabled_device_stops_within_the_60_second_cache(harness: Harness):
    device = harness.registered()
    assert await harness.prove(device)
    requests = harness.graph.stats.requests["devices"]

    harness.graph.disable_device(device.device_id)
    harness.clock.now += 59  # still the cached answer: no Graph request
    assert await harness.prove(device)
    assert harness.graph.stats.requests["devices"] == requests

    harness.clock.now += 2  # 61 s after the lookup: read again, now disabled
    assert (await harness.refusal(device)).status == 403
    assert harness.graph.stats.requests["devices"] == requests + 1


async def test_graph_unreachable_is_503_with_retry_after_and_not_cached(harness: Harness):
    device = harness.registered()
    harness.graph.fail_next(503, retry_after=1, on="devices")
    refused = await harness.refusal(device)
    assert isinstance(refused, ServiceUnavailable)
    assert int(refused.headers["Retry-After"]) > 0

    harness.graph.reset_next(on="devices")
    assert isinstance(await harness.refusal(device), ServiceUnavailable)

    assert await harness.prove(device) == device.device_id  # the failures were not cached


async def test_graph_is_asked_for_one_device_with_the_contracts_select(harness: Harness):
    device = harness.registered()
    url = harness.directory.url(device.device_id)
    assert url.endswith(
        f"/devices?$filter=deviceId%20eq%20'{device.device_id}'"
        "&$select=id,deviceId,accountEnabled,trustType,alternativeSecurityIds"
    )
    record = await harness.directory.device(device.device_id)
    assert record is not None
    assert record.account_enabled
    assert record.trust_type == "AzureAd"


def test_registered_keys_match_with_or_without_plus_and_in_any_case():
    device = DeviceIdentity.generate()
    [entry] = device.alternative_security_ids()
    thumbprint, digest = device.thumbprint, device.public_key_sha256
    assert registered_key_matches(entry["key"], thumbprint.lower(), digest)

    for text in (
        f"X509:<SHA1-TP-PUBKEY>{thumbprint.lower()}+{digest}",
        f"X509:<SHA1-TP-PUBKEY>{thumbprint}{digest}",
    ):
        key = base64.b64encode(text.encode("utf-16-le")).decode()
        assert registered_key_matches(key, thumbprint, digest)
    other = DeviceIdentity.generate()
    assert not registered_key_matches(entry["key"], other.thumbprint, other.public_key_sha256)
    assert not registered_key_matches(entry["key"], thumbprint, other.public_key_sha256)
    assert not registered_key_matches("not base64!", thumbprint, digest)


# -- single use across instances: the DeviceProofs table -----------------------------------------
async def test_jti_is_single_use_across_guards_sharing_a_table(storage: Storage):
    first, second = TableReplayGuard(storage), TableReplayGuard(storage)
    device, other, jti, iat = (
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        int(time.time()),
    )

    assert await first.first_use(device, jti, iat)
    assert not await second.first_use(device, jti, iat)  # another instance sees the replay
    assert await second.first_use(other, jti, iat)  # the same jti of another device is its own


async def test_concurrent_proofs_share_transactions_and_replays_among_them_are_found(
    storage: Storage,
):
    guard, iat = TableReplayGuard(storage), int(time.time())
    device = str(uuid.uuid4())
    jtis = [str(uuid.uuid4()) for _ in range(150)]
    assert await guard.first_use(device, jtis[0], iat)  # already used before the burst

    # The burst: every jti once, two of them twice (a replay racing its original).
    burst = jtis + jtis[1:3]
    results = await asyncio.gather(*(guard.first_use(device, jti, iat) for jti in burst))

    fresh = [jti for jti, first in zip(burst, results, strict=True) if first]
    assert sorted(fresh) == sorted(jtis[1:])  # each new jti exactly once; jtis[0] never again


async def test_purge_removes_only_rows_no_proof_can_need(storage: Storage):
    guard = TableReplayGuard(storage)
    now = time.time()
    old_iat, fresh_iat = int(now) - 3600, int(now) - 200
    old, fresh = str(uuid.uuid4()), str(uuid.uuid4())
    assert await guard.first_use(old, "jti", old_iat)
    assert await guard.first_use(fresh, "jti", fresh_iat)

    await guard.purge(now)  # (the first use also started one in the background)

    table = await storage.table(DEVICE_PROOFS)
    keys = [row["PartitionKey"] async for row in table.list_entities(select=["PartitionKey"])]
    assert window_key(old_iat) not in keys
    assert window_key(fresh_iat) in keys
    assert not await guard.first_use(fresh, "jti", fresh_iat)


async def test_two_instances_purging_the_same_rows_at_once_both_end_without_error(
    storage: Storage, caplog: pytest.LogCaptureFixture
):
    """Both read the same expired rows; the later delete finds them gone and stops quietly.
    Whether the two reads overlap is up to the scheduler: rounds until they have (bounded)."""
    table = await storage.table(DEVICE_PROOFS)
    expired = window_key(time.time() - 3 * 86400)
    first, second = TableReplayGuard(storage), TableReplayGuard(storage)
    for _ in range(20):
        for _ in range(5):
            await table.create_entity({"PartitionKey": expired, "RowKey": str(uuid.uuid4())})
        with caplog.at_level(logging.INFO, logger="shared.auth._replay"):
            await asyncio.gather(first.purge(time.time()), second.purge(time.time()))
        left = [row async for row in table.query_entities(f"PartitionKey eq '{expired}'")]
        assert left == []
        if "device proof purge stopped early" in caplog.text:
            return
    raise AssertionError("the two purges never overlapped in 20 rounds")


def test_window_keys_sort_by_time():
    moments = [
        datetime(2026, 12, 2, h, m, tzinfo=UTC).timestamp()
        for h, m in [(9, 59), (10, 0), (10, 9), (10, 10), (23, 0)]
    ]
    keys = [window_key(m) for m in moments]
    assert keys == sorted(keys)
    assert keys[1] == keys[2] == "20261202T1000Z"
    assert keys[3] == "20261202T1010Z"
