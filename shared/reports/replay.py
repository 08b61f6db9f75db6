"""Move messages from `device-status-poison` back to `device-status`, byte for byte.

    python -m shared.reports.replay [--dry-run] [--max N]

Reads `AzureWebJobsStorage` like the app. Each message is sent to `device-status` first and only
then deleted from the poison queue, so a crash in between leaves a duplicate, never a loss; the
`record_status` trigger records a duplicate once. Messages move with their text exactly as stored
(no decoding), so whatever encoding the host wrote is what the trigger reads again.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from dataclasses import dataclass, field
from typing import Final

from azure.core.exceptions import ResourceNotFoundError
from azure.storage.queue.aio import QueueClient

from shared.errors import BootstrapError
from shared.names import DEVICE_STATUS_QUEUE
from shared.storage import Storage, StorageConfig, translate_errors

POISON_QUEUE: Final = f"{DEVICE_STATUS_QUEUE}-poison"
# Long enough to send and delete a batch; a crashed replay's messages reappear after it.
_VISIBILITY_SECONDS: Final = 120
_BATCH: Final = 32


@dataclass(slots=True)
class ReplayResult:
    moved: int = 0
    message_ids: list[str] = field(default_factory=list)
    remaining_estimate: int = 0


async def replay_poison(
    storage: Storage, *, max_messages: int | None = None, dry_run: bool = False
) -> ReplayResult:
    """Move up to `max_messages` (all when None); with `dry_run`, only look at them."""
    # Plain (non-base64) clients: the text moves exactly as it is stored.
    poison = storage.queues.get_queue_client(POISON_QUEUE)
    target = storage.queues.get_queue_client(DEVICE_STATUS_QUEUE)
    result = ReplayResult()
    async with translate_errors():
        if not await _exists(poison):
            return result
        if dry_run:
            return await _peek(poison, max_messages)
        while max_messages is None or result.moved < max_messages:
            wanted = _BATCH if max_messages is None else min(_BATCH, max_messages - result.moved)
            batch = [
                m
                async for m in poison.receive_messages(
                    messages_per_page=wanted,
                    max_messages=wanted,
                    visibility_timeout=_VISIBILITY_SECONDS,
                )
            ]
            if not batch:
                break
            for message in batch:
                await target.send_message(message.content)
                await poison.delete_message(message)
                result.moved += 1
                result.message_ids.append(message.id)
        result.remaining_estimate = await _count(poison)
    return result


async def _exists(queue: QueueClient) -> bool:
    try:
        await queue.get_queue_properties()
    except ResourceNotFoundError:
        return False
    return True


async def _count(queue: QueueClient) -> int:
    return (await queue.get_queue_properties()).approximate_message_count or 0


async def _peek(poison: QueueClient, max_messages: int | None) -> ReplayResult:
    count = await _count(poison)
    shown = min(count, max_messages if max_messages is not None else count, 32)
    peeked = await poison.peek_messages(max_messages=shown) if shown else []
    return ReplayResult(0, [m.id for m in peeked], count)


async def _main_async(args: argparse.Namespace) -> int:
    try:
        storage = Storage(StorageConfig.from_env(os.environ))
    except BootstrapError as error:
        print(f"setting error: {error}", file=sys.stderr)
        return 1
    try:
        result = await replay_poison(storage, max_messages=args.max, dry_run=args.dry_run)
    except BootstrapError as error:
        print(f"replay failed: {error}", file=sys.stderr)
        return 1
    finally:
        await storage.close()
    if args.dry_run:
        print(f"{result.remaining_estimate} message(s) in {POISON_QUEUE}; would move:")
        for message_id in result.message_ids:
            print(f"  {message_id}")
    else:
        print(
            f"moved {result.moved} message(s) from {POISON_QUEUE} to {DEVICE_STATUS_QUEUE}; "
            f"about {result.remaining_estimate} left"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m shared.reports.replay",
        description=f"Move messages from {POISON_QUEUE} back to {DEVICE_STATUS_QUEUE}.",
    )
    parser.add_argument("--dry-run", action="store_true", help="list, move nothing")
    parser.add_argument("--max", type=int, default=None, metavar="N", help="move at most N")
    args = parser.parse_args(argv)
    if args.max is not None and args.max < 1:
        parser.error("--max must be at least 1")
    return asyncio.run(_main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
