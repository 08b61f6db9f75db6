"""One object per running event loop, made on first use.

Async Azure SDK clients (storage, Key Vault) and anything holding them belong to the loop that
made them. The Functions worker runs every async function on one loop; tests and the development
host may run several loops in one process, so a plain module global would leak across them.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class PerLoop(Generic[T]):
    """`get()` returns this loop's object, calling `factory` the first time on each loop."""

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = (
            weakref.WeakKeyDictionary()
        )

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        value = self._by_loop.get(loop)
        if value is None:
            value = self._by_loop[loop] = self._factory()
        return value

    def peek(self) -> T | None:
        """This loop's object if `get()` made one, without making it."""
        return self._by_loop.get(asyncio.get_running_loop())

    def discard(self) -> None:
        """Forget this loop's object: the next `get()` makes a new one."""
        self._by_loop.pop(asyncio.get_running_loop(), None)
