"""Group commit: concurrent requests share one storage round trip instead of one each.

Each storage call costs about 1.2 ms of CPU in the Azure SDK, three times the RS256 work of a
bundle, so at load the per-bundle table read and write dominate. A `Coalescer` sends the first
item at once (no added latency when idle); items that arrive while that call is in flight go
together in the next one, up to `max_batch`. Every caller still awaits the result for its own
item, so a bundle is only returned after its audit row is stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Coalescer(Generic[Item, Result]):
    """Batches `submit`ted items into calls of `flush(items) -> results` (same order), with at
    most `max_in_flight` calls outstanding; items queue for the next free call."""

    def __init__(
        self,
        flush: Callable[[list[Item]], Awaitable[list[Result]]],
        *,
        max_batch: int,
        max_in_flight: int = 4,
    ) -> None:
        self._flush = flush
        self._max_batch = max_batch
        self._max_in_flight = max_in_flight
        self._pending: list[tuple[Item, asyncio.Future[Result]]] = []
        self._in_flight = 0
        self._drains: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if self._in_flight < self._max_in_flight:
            self._in_flight += 1
            task = loop.create_task(self._drain())
            self._drains.add(task)  # a reference, so the running drain is not collected
            task.add_done_callback(self._drains.discard)
        return await future

    async def _drain(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._run(batch)
        finally:
            self._in_flight -= 1

    async def _run(self, batch: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._flush([item for item, _ in batch])
        except Exception as error:  # every waiter of this batch sees the failure
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, future), result in zip(batch, results, strict=True):
            if not future.done():  # a waiter may have been cancelled
                future.set_result(result)
