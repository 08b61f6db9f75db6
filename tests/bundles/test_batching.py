"""Group commit: concurrent submissions share calls, results go back to the right caller, and a
failed call fails every caller in it (so no bundle is returned without its audit row)."""

from __future__ import annotations

import asyncio

import pytest

from shared.batching import Coalescer
from shared.errors import StorageUnavailable


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.calls: list[list[int]] = []
        self.fail = fail
        self.release = asyncio.Event()

    async def flush(self, items: list[int]) -> list[int]:
        self.calls.append(list(items))
        await self.release.wait()
        if self.fail:
            raise StorageUnavailable("down")
        return [item * 10 for item in items]


async def test_items_arriving_during_a_call_share_the_next_one():
    recorder = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(recorder.flush, max_batch=3, max_in_flight=1)

    waiters = [asyncio.create_task(coalescer.submit(i)) for i in range(7)]
    await asyncio.sleep(0)  # let every submission register
    recorder.release.set()
    results = await asyncio.gather(*waiters)

    assert results == [i * 10 for i in range(7)]
    assert recorder.calls == [[0, 1, 2], [3, 4, 5], [6]]


async def test_a_failed_call_fails_each_of_its_callers():
    recorder = Recorder(fail=True)
    coalescer: Coalescer[int, int] = Coalescer(recorder.flush, max_batch=10)
    waiters = [asyncio.create_task(coalescer.submit(i)) for i in range(3)]
    recorder.release.set()

    outcomes = await asyncio.gather(*waiters, return_exceptions=True)

    assert all(isinstance(outcome, StorageUnavailable) for outcome in outcomes)
    recorder.fail = False
    assert await coalescer.submit(5) == 50  # the next call works again


async def test_an_idle_submission_is_sent_at_once():
    recorder = Recorder()
    recorder.release.set()
    coalescer: Coalescer[int, int] = Coalescer(recorder.flush, max_batch=10)

    assert await asyncio.wait_for(coalescer.submit(1), timeout=5) == 10
    assert recorder.calls == [[1]]


@pytest.mark.parametrize("in_flight", [1, 4])
async def test_at_most_max_in_flight_calls_run_together(in_flight: int):
    running = 0
    peak = 0

    async def flush(items: list[int]) -> list[int]:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await asyncio.sleep(0.01)
        running -= 1
        return items

    coalescer: Coalescer[int, int] = Coalescer(flush, max_batch=1, max_in_flight=in_flight)
    assert await asyncio.gather(*(coalescer.submit(i) for i in range(12))) == list(range(12))
    assert peak == in_flight
