"""The development host's own cost: HTTP requests/s and queue messages/s, each next to its ceiling.

    .venv/bin/python -m bench.devhost [--requests 2000] [--concurrency 16] [--messages 400]

1. HTTP: `GET /api/devices/{guid}` of tests/devhost_app (a synchronous function on the thread
   pool) with `--concurrency` in flight; ceiling: `GET /admin/host/status` on the same server in
   the same run (routing, converters and the invocation are the difference).
2. Queue: `--messages` base64 messages relayed by the `relay` function (trigger + queue output:
   receive, invoke, send, delete; tests/devhost_app/host.json has batchSize 8 and
   newBatchThreshold 4); ceiling: a plain client receiving in batches of 32 and deleting the same
   number of messages from Azurite, one batch in flight, in the same run.
Starts its own Azurite and host. Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import time
import uuid

import aiohttp
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from devhost.azurite import Azurite, running_azurite
from tests.support.devhost import DevHostProcess
from tests.support.devhost_app import APP, app_env


async def requests_per_second(url: str, total: int, concurrency: int) -> float:
    async with aiohttp.ClientSession() as session:
        remaining = iter(range(total))

        async def worker() -> None:
            for _ in remaining:
                async with session.get(url) as response:
                    await response.read()
                    assert response.status == 200, response.status

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return total / (time.perf_counter() - started)


async def fill(client: QueueClient, count: int) -> None:
    body = base64.b64encode(b"bench").decode()
    await asyncio.gather(*(client.send_message(body) for _ in range(count)))


async def plain_drain_per_second(azurite: Azurite, count: int) -> float:
    async with QueueClient.from_connection_string(
        azurite.connection_string, f"ceiling-{uuid.uuid4().hex[:8]}"
    ) as client:
        await client.create_queue()
        await fill(client, count)
        started = time.perf_counter()
        done = 0
        while done < count:
            pages = client.receive_messages(messages_per_page=32, max_messages=32)
            batch = [message async for message in pages]
            await asyncio.gather(*(client.delete_message(m) for m in batch))
            done += len(batch)
        return count / (time.perf_counter() - started)


async def fill_queue(azurite: Azurite, name: str, count: int) -> None:
    async with QueueClient.from_connection_string(azurite.connection_string, name) as client:
        await client.create_queue()
        await fill(client, count)


async def wait_relayed(azurite: Azurite, name: str, count: int, started: float) -> float:
    async with QueueClient.from_connection_string(azurite.connection_string, name) as target:
        deadline = started + 300
        while True:
            try:
                waiting = (await target.get_queue_properties()).approximate_message_count or 0
            except ResourceNotFoundError:
                waiting = 0
            if waiting >= count:
                return count / (time.perf_counter() - started)
            if time.perf_counter() > deadline:
                raise TimeoutError("the host did not relay every message in 300 s")
            await asyncio.sleep(0.05)  # polling the output queue; bounded by the deadline


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--messages", type=int, default=400)
    args = parser.parse_args()
    with running_azurite() as azurite:
        env = app_env(azurite)
        # The input queue is filled before the host starts; the clock starts when it is ready.
        asyncio.run(fill_queue(azurite, env["RELAY_IN_QUEUE"], args.messages))
        with DevHostProcess(env, script_root=APP) as host:
            started = time.perf_counter()
            relayed = asyncio.run(
                wait_relayed(azurite, env["RELAY_OUT_QUEUE"], args.messages, started)
            )
            ceiling = asyncio.run(plain_drain_per_second(azurite, args.messages))
            print(
                f"queue: {relayed:.0f} messages/s relayed (trigger + output binding) "
                f"(ceiling {ceiling:.0f}/s: plain receive+delete on Azurite), "
                f"{args.messages} messages"
            )
            device = host.url(f"/api/devices/{uuid.uuid4()}")
            status = host.url("/admin/host/status")
            n, c = args.requests, args.concurrency
            function_rate = asyncio.run(requests_per_second(device, n, c))
            ceiling_rate = asyncio.run(requests_per_second(status, n, c))
            print(
                f"http: {function_rate:.0f} requests/s through a function "
                f"(ceiling {ceiling_rate:.0f}/s: the host's own status endpoint), concurrency {c}"
            )


if __name__ == "__main__":
    main()
