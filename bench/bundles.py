"""Bundle issuance: throughput at the HTTP handler on one core, next to its ceiling, and latency
through the development host at a steady request rate.

    .venv/bin/python -m bench.bundles [--requests 2000] [--concurrency 16] [--rate 20 --seconds 10]

1. Ceiling: one RS256 verify (the device's access token) plus one RS256 sign (the bundle), with
   the same keys, in a loop on this core: the cryptography every bundle cannot avoid.
2. Handler: the registered `bundle` function called directly with `func.HttpRequest`s (token
   validation, blocked-device read, signing, audit insert into Azurite), `--concurrency` in
   flight, this process pinned to one core (Azurite and the issuer run elsewhere).
3. Host: `python -m devhost` at `--rate` requests/s for `--seconds`, open loop; p50/p99.
It starts its own Azurite, loopback Entra issuer and host. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
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
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from devhost.azurite import running_azurite
from shared.storage import get_storage
from tests.fakes.entra import EntraIssuer
from tests.support.devhost import DevHostProcess
from tests.support.settings import RESOURCE_URI, SERVER_APP_ID, product_env


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


def ceiling(issuer: EntraIssuer, bundle_key: rsa.RSAPrivateKey, seconds: float = 3.0) -> float:
    """Verify + sign per second on this core, with the service's keys and a real token."""
    token = issuer.mint_access_token()
    public = issuer.current_key.private_key.public_key()
    payload = b"x" * 1200  # about the size of a bundle's signing input
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        jwt.decode(token, public, algorithms=["RS256"], audience=[SERVER_APP_ID, RESOURCE_URI])
        bundle_key.sign(payload, padding.PKCS1v15(), hashes.SHA256())
        count += 1
    return count / (time.perf_counter() - started)


def bundle_function() -> Any:
    import function_app

    for function in function_app.app.get_functions():
        if function.get_function_name() == "bundle":
            return function.get_user_function()
    raise SystemExit("no 'bundle' function registered")


async def handler_throughput(
    issuer: EntraIssuer, requests: int, concurrency: int
) -> tuple[float, float]:
    """(bundles per wall-clock second, bundles per CPU second of this process)."""
    handler = bundle_function()
    tokens = [issuer.mint_access_token() for _ in range(16)]

    def request(i: int) -> func.HttpRequest:
        return func.HttpRequest(
            method="GET",
            url="http://127.0.0.1:7071/api/bundle",
            headers={"Authorization": f"Bearer {tokens[i % len(tokens)]}"},
            params={"deviceId": str(uuid.uuid4()), "nonce": f"bench-nonce-{i:08d}"},
            body=b"",
        )

    async def worker(indices: range) -> None:
        for i in indices:
            response = await handler(request(i))
            if response.status_code != 200:
                raise SystemExit(
                    f"handler answered {response.status_code}: {response.get_body()!r}"
                )

    await worker(range(concurrency))  # warm-up: key fetch, tables, connections
    started, cpu_started = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(range(w, requests, concurrency)) for w in range(concurrency)))
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    await get_storage().close()
    return requests / wall, requests / cpu


async def host_latency(host: DevHostProcess, issuer: EntraIssuer, rate: float, seconds: float):
    token = issuer.mint_access_token()
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
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory() as folder,
        running_azurite() as azurite,
        EntraIssuer() as issuer,
    ):
        key_path, bundle_key = write_signing_key(Path(folder))
        env = product_env(
            azurite.connection_string,
            AAD_AUTHORITY_HOST=issuer.authority_host,
            BUNDLE_SIGNING_KEY_FILE=str(key_path),
            CCMSETUP_SOURCE="C:\\CLIENT",
            CCMSETUP_NO_CRL_CHECK="true",
        )
        os.environ.update(env)
        all_cores = os.sched_getaffinity(0)
        os.sched_setaffinity(0, {min(all_cores)})  # one core for this process
        ceiling_rate = ceiling(issuer, bundle_key)
        handler_rate, cpu_rate = asyncio.run(
            handler_throughput(issuer, args.requests, args.concurrency)
        )
        os.sched_setaffinity(0, all_cores)  # the host (a child) may use every core again
        print(f"ceiling (RS256 verify + sign, one core): {ceiling_rate:8.0f} /s")
        print(f"handler (bundle function, one core):     {handler_rate:8.0f} bundles/s")
        print(f"ratio handler / ceiling:                 {handler_rate / ceiling_rate:8.2f}")
        # Azurite runs on another core; per CPU second shows the handler's own cost.
        print(f"handler per CPU second of this process:  {cpu_rate:8.0f} bundles/s")
        print(f"ratio per CPU second / ceiling:          {cpu_rate / ceiling_rate:8.2f}")
        sys.stdout.flush()
        with DevHostProcess(env) as host:
            p50, p99, failures = asyncio.run(host_latency(host, issuer, args.rate, args.seconds))
        print(
            f"host latency at {args.rate:g} req/s for {args.seconds:g} s: "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, non-200: {failures}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
