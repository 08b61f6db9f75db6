"""Bundle issuance: throughput at the HTTP handler on one core in each BOOTSTRAP_AUTH mode, next
to the ceiling of the cryptography that mode needs, and latency through the development host.

    .venv/bin/python -m bench.bundles [--requests 2000] [--concurrency 16] [--devices 64]
                                      [--rate 20 --seconds 10]

1. Ceilings, on this core with the same keys: the cryptography every bundle cannot avoid.
   `user`: one RS256 verify (the access token) + one RS256 sign (the bundle); `device`: one
   device proof verified (x5c certificate parsed, RS256 verify, claims) + the sign;
   `device+user`: proof + token + sign.
2. Handler: the registered `bundle` function called directly with `func.HttpRequest`s,
   `--concurrency` in flight, this process pinned to one core (Azurite, the issuer and the
   loopback Graph serve from elsewhere). It does what the mode needs: token validation, proof
   verification, the single-use jti insert (DeviceProofs), the device's Graph record (each of
   `--devices` devices is looked up once in a warm-up, then served from the 60 s cache, as a
   device retrying within a minute would be), the blocked-device read, signing, the audit insert.
3. Host: `python -m devhost` (`user` mode) at `--rate` requests/s for `--seconds`; p50/p99,
   first for a user no install profile reaches, then (same run, same host) for a user whose
   group has a profile, so the bundle carries it.
4. Install profile lookup: what it adds to a bundle, timed alone: `--lookups` sequential
   `applied_profile` calls (the device's and the user's ResolvedProfiles rows, two point reads
   side by side) on a table rebuilt for `--profile-members` members; p50/p99, and the rebuild's
   rate (rows/s) beside Azurite's batch-upsert figure.
5. Production: Key Vault signs every bundle; its per-vault limit for the infra's key (RSA 3072,
   software) is 1,000 sign operations per 10 s, i.e. 100 bundles/s per vault, whatever the
   handler's own rate.
It starts its own Azurite, loopback Entra issuer, managed identity, Graph and host.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import jwt
from azure.data.tables import TransactionOperation, UpdateMode
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devhost.azurite import running_azurite
from devtools.devices import DeviceIdentity
from devtools.fakes.entra import EntraIssuer
from devtools.fakes.graph import FakeGraph
from devtools.fakes.identity import FakeManagedIdentity
from shared.auth import PROOF_HEADER, ProofRequest, ProofVerifier, close_device_authenticator
from shared.names import AAD_GROUP_MEMBERS
from shared.profiles import (
    Overrides,
    Profile,
    applied_profile,
    rebuild_state,
    run_rebuild_job,
    save_profile,
)
from shared.settings import get_settings
from shared.storage import Storage, StorageConfig, get_storage
from tests.support.devhost import DevHostProcess
from tests.support.settings import RESOURCE_URI, SERVER_APP_ID, product_env

HANDLER_HOST = "127.0.0.1:7071"
BUNDLE_URL = f"http://{HANDLER_HOST}/api/bundle"
MODES = ("user", "device", "device+user")
# Key Vault, per vault and 10 s, software RSA 3072 keys (the key infra/modules/app.bicep makes).
KEY_VAULT_SIGNS_PER_10_SECONDS = 1000


def write_signing_key(folder: Path) -> tuple[Path, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = folder / "bundle-signing.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path, key


def ceiling(
    mode: str,
    issuer: EntraIssuer,
    bundle_key: rsa.RSAPrivateKey,
    device: DeviceIdentity,
    seconds: float = 3.0,
) -> float:
    """Bundles per second this mode's cryptography alone allows on this core."""
    token = issuer.mint_access_token()
    public = issuer.current_key.private_key.public_key()
    payload = b"x" * 1200  # about the size of a bundle's signing input
    verifier = ProofVerifier([HANDLER_HOST])
    bound = token if mode == "device+user" else None
    proof = device.proof("GET", BUNDLE_URL, nonce="bench-nonce", token=bound)
    request = ProofRequest(
        "GET", BUNDLE_URL, device_id=device.device_id, nonce="bench-nonce", bearer_token=bound
    )
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        if mode != "device":
            jwt.decode(token, public, algorithms=["RS256"], audience=[SERVER_APP_ID, RESOURCE_URI])
        if mode != "user":
            verifier.verify(proof, request)
        bundle_key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        count += 1
    return count / (time.perf_counter() - started)


@functools.cache
def bundle_function() -> Any:
    """Indexed once: `get_functions()` raises when called twice for one app."""
    import function_app

    for function in function_app.app.get_functions():
        if function.get_function_name() == "bundle":
            return function.get_user_function()
    raise SystemExit("no 'bundle' function registered")


def prepared_requests(
    mode: str, issuer: EntraIssuer, devices: list[DeviceIdentity], count: int
) -> list[func.HttpRequest]:
    """`count` requests as devices would send them in `mode` (proofs signed before timing)."""
    tokens = [issuer.mint_access_token() for _ in range(16)]
    requests = []
    for i in range(count):
        device, token = devices[i % len(devices)], tokens[i % len(tokens)]
        nonce = f"bench-nonce-{i:08d}"
        headers: dict[str, str] = {}
        if mode != "device":
            headers["Authorization"] = f"Bearer {token}"
        if mode != "user":
            bound = token if mode == "device+user" else None
            headers[PROOF_HEADER] = device.proof("GET", BUNDLE_URL, nonce=nonce, token=bound)
        device_id = device.device_id if mode != "user" else str(uuid.uuid4())
        requests.append(
            func.HttpRequest(
                method="GET",
                url=f"{BUNDLE_URL}?deviceId={device_id}&nonce={nonce}",
                headers=headers,
                params={"deviceId": device_id, "nonce": nonce},
                body=b"",
            )
        )
    return requests


async def handler_throughput(
    warm_up: list[func.HttpRequest], timed: list[func.HttpRequest], concurrency: int
) -> tuple[float, float]:
    """(bundles per wall-clock second, bundles per CPU second of this process)."""
    handler = bundle_function()

    async def worker(requests: list[func.HttpRequest]) -> None:
        for request in requests:
            response = await handler(request)
            if response.status_code != 200:
                raise SystemExit(
                    f"handler answered {response.status_code}: {response.get_body()!r}"
                )

    # Warm-up: key fetch, tables, connections, and each device's Graph record.
    await asyncio.gather(*(worker(warm_up[w::concurrency]) for w in range(concurrency)))
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(timed[w::concurrency]) for w in range(concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await close_device_authenticator()
    await get_storage().close()
    return len(timed) / wall, len(timed) / cpu


async def add_members(storage: Storage, group: str, members: dict[str, str]) -> None:
    """Memberships as group discovery writes them, 100 to a transaction."""
    table = await storage.table(AAD_GROUP_MEMBERS)
    rows = [
        {"PartitionKey": group, "RowKey": m, "memberType": kind, "isDeleted": False}
        for m, kind in members.items()
    ]
    for start in range(0, len(rows), 100):
        operations = [
            (TransactionOperation.UPSERT, row, {"mode": UpdateMode.REPLACE})
            for row in rows[start : start + 100]
        ]
        await table.submit_transaction(operations)


async def profile_lookups(
    connection_string: str, tenant: str, members: int, lookups: int, user_oid: str
) -> tuple[float, float, float, float, float]:
    """A profile over a group of `members` (half users, half devices, `user_oid` among them):
    (rebuild rows/s, lookup p50 ms, p99 ms, miss p50 ms, miss p99 ms)."""
    storage = Storage(StorageConfig(connection_string=connection_string))
    try:
        group = str(uuid.uuid4())
        ids = {str(uuid.uuid4()): "user" if i % 2 else "device" for i in range(members - 1)}
        await add_members(storage, group, ids | {user_oid: "user"})
        profile = Profile("bench", group, 1, Overrides(site_code="BEN"))
        started = time.perf_counter()
        await save_profile(tenant, profile, updated_by="bench", storage=storage)
        # The queued job, run here (the host polling the queue may take it first: then wait).
        while not (await rebuild_state(tenant, storage)).up_to_date:
            if await run_rebuild_job(tenant, storage, budget_seconds=3600) == "busy":
                await asyncio.sleep(0.05)
        rebuild_rate = members / (time.perf_counter() - started)
        devices = [m for m, kind in ids.items() if kind == "device"]

        async def timed(pairs: list[list[str | None]]) -> tuple[float, float]:
            latencies = []
            for pair in pairs:
                begun = time.perf_counter()
                found = await applied_profile(tenant, pair, storage)
                latencies.append(time.perf_counter() - begun)
                assert (found is not None) == (pair[0] in ids), "the lookup answered wrongly"
            quantiles = statistics.quantiles(latencies, n=100)
            return quantiles[49] * 1000, quantiles[98] * 1000

        await timed([[devices[0], user_oid]] * 20)  # warm-up: connection
        hits: list[list[str | None]] = [
            [devices[i % len(devices)], user_oid] for i in range(lookups)
        ]
        misses: list[list[str | None]] = [
            [str(uuid.uuid4()), str(uuid.uuid4())] for _ in range(lookups)
        ]
        hit_p50, hit_p99 = await timed(hits)
        miss_p50, miss_p99 = await timed(misses)
        return rebuild_rate, hit_p50, hit_p99, miss_p50, miss_p99
    finally:
        await storage.close()


async def host_latency(
    host: DevHostProcess, issuer: EntraIssuer, rate: float, seconds: float, oid: str | None = None
) -> tuple[float, float, int]:
    token = issuer.mint_access_token(oid=oid)
    latencies: list[float] = []
    failures = 0

    async def one(http: httpx.AsyncClient, i: int) -> None:
        nonlocal failures
        params = {"deviceId": str(uuid.uuid4()), "nonce": f"bench-nonce-{i:08d}"}
        started = time.perf_counter()
        response = await http.get(
            host.url("/api/bundle"), params=params, headers={"Authorization": f"Bearer {token}"}
        )
        latencies.append(time.perf_counter() - started)
        failures += response.status_code != 200

    async with httpx.AsyncClient(timeout=30) as http:
        await one(http, -1)  # warm-up
        latencies.clear()
        tasks = []
        start = time.perf_counter()
        for i in range(int(rate * seconds)):
            # Open loop: send on schedule whether or not earlier requests have finished.
            await asyncio.sleep(max(0.0, start + i / rate - time.perf_counter()))
            tasks.append(asyncio.create_task(one(http, i)))
        await asyncio.gather(*tasks)
    quantiles = statistics.quantiles(latencies, n=100)
    return quantiles[49] * 1000, quantiles[98] * 1000, failures


def main() -> int:
    parser = argparse.ArgumentParser(description="bundle issuance benchmark")
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--devices", type=int, default=64)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--profile-members", type=int, default=5000)
    parser.add_argument("--lookups", type=int, default=1000)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as folder,
        running_azurite() as azurite,
        EntraIssuer() as issuer,
        FakeManagedIdentity() as identity,
        FakeGraph(identity) as graph,
    ):
        key_path, bundle_key = write_signing_key(Path(folder))
        devices = [DeviceIdentity.generate() for _ in range(args.devices)]
        for device in devices:
            graph.register_device(device.device_id, device.alternative_security_ids())
        env = product_env(
            azurite.connection_string,
            AAD_AUTHORITY_HOST=issuer.authority_host,
            GRAPH_BASE_URL=graph.graph_base_url,
            WEBSITE_HOSTNAME=HANDLER_HOST,
            BUNDLE_SIGNING_KEY_FILE=str(key_path),
            CCMSETUP_SOURCE="C:\\CLIENT",
            CCMSETUP_NO_CRL_CHECK="true",
            **identity.environment(),
        )
        os.environ.update(env)
        all_cores = os.sched_getaffinity(0)
        for mode in MODES:
            os.environ["BOOTSTRAP_AUTH"] = mode
            get_settings.cache_clear()
            warm_up = prepared_requests(mode, issuer, devices, max(len(devices), args.concurrency))
            timed = prepared_requests(mode, issuer, devices, args.requests)
            os.sched_setaffinity(0, {min(all_cores)})  # one core for this process
            ceiling_rate = ceiling(mode, issuer, bundle_key, devices[0])
            handler_rate, cpu_rate = asyncio.run(
                handler_throughput(warm_up, timed, args.concurrency)
            )
            os.sched_setaffinity(0, all_cores)
            print(f"[{mode}] ceiling (its cryptography, one core): {ceiling_rate:8.0f} /s")
            print(f"[{mode}] handler (bundle function, one core):   {handler_rate:8.0f} bundles/s")
            ratio = handler_rate / ceiling_rate
            print(f"[{mode}] ratio handler / ceiling:               {ratio:8.2f}")
            # Azurite runs on another core; per CPU second shows the handler's own cost.
            print(f"[{mode}] handler per CPU second of this process: {cpu_rate:8.0f} bundles/s")
            sys.stdout.flush()
        vault_rate = KEY_VAULT_SIGNS_PER_10_SECONDS / 10
        print(
            f"production ceiling: Key Vault signs at most {KEY_VAULT_SIGNS_PER_10_SECONDS} "
            f"per 10 s per vault for software RSA 3072 keys: {vault_rate:.0f} bundles/s per vault"
        )
        env["BOOTSTRAP_AUTH"] = "user"
        sys.stdout.flush()
        tenant, user_oid = env["AAD_TENANT_ID"], str(uuid.uuid4())
        with DevHostProcess(env) as host:
            p50, p99, failures = asyncio.run(host_latency(host, issuer, args.rate, args.seconds))
            print(
                f"host latency (user mode, no profile) at {args.rate:g} req/s for "
                f"{args.seconds:g} s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, non-200: {failures}"
            )
            sys.stdout.flush()
            rebuild_rate, hit_p50, hit_p99, miss_p50, miss_p99 = asyncio.run(
                profile_lookups(
                    azurite.connection_string, tenant, args.profile_members, args.lookups, user_oid
                )
            )
            p50, p99, failures = asyncio.run(
                host_latency(host, issuer, args.rate, args.seconds, oid=user_oid)
            )
            print(
                f"host latency (user mode, the user's group has a profile): p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms, non-200: {failures}"
            )
        print(
            f"profile lookup alone (device + user row, 2 point reads side by side, "
            f"{args.lookups} sequential): p50 {hit_p50:.2f} ms, p99 {hit_p99:.2f} ms; "
            f"no row (default profile): p50 {miss_p50:.2f} ms, p99 {miss_p99:.2f} ms"
        )
        print(
            f"resolved-profiles rebuild ({args.profile_members} members, one profile): "
            f"{rebuild_rate:.0f} rows/s (insert-only claims, 4 transactions in flight; "
            "bench.discovery --only profiles puts it beside the Azurite ceiling)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
