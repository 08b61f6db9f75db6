"""What the app does when its host stops: close the clients this event loop opened.

In Azure the worker process ends with its clients. A host that stops the app and keeps running
(the development host, a test's loop) awaits `close_clients()` once, after the last invocation,
so no connection or credential is left open (aiohttp warns about each one it finds).
"""

from __future__ import annotations

from shared.auth import close_device_authenticator
from shared.storage import close_storage


async def close_clients() -> None:
    """Close the storage clients and the device-proof Graph client, where this loop made them."""
    await close_device_authenticator()
    await close_storage()
