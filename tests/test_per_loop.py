"""Async SDK clients belong to the loop that made them: one object per loop, made once."""

import asyncio
import itertools

from shared.per_loop import PerLoop


def test_each_loop_gets_its_own_object_made_once():
    counter = itertools.count()
    objects = PerLoop(lambda: next(counter))

    async def twice() -> tuple[int, int]:
        return objects.get(), objects.get()

    assert asyncio.run(twice()) == (0, 0)
    assert asyncio.run(twice()) == (1, 1)  # a new loop, a new object


def test_discard_makes_the_next_get_build_anew():
    counter = itertools.count()
    objects = PerLoop(lambda: next(counter))

    async def discard_between() -> tuple[int, int]:
        first = objects.get()
        objects.discard()
        return first, objects.get()

    assert asyncio.run(discard_between()) == (0, 1)
