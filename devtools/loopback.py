"""`LoopbackServer`: the one way a fake serves HTTP(S) on 127.0.0.1 for tests, bench and demo.

Each fake is an aiohttp application run in its own thread and event loop, so it serves pytest
(any loop), the benchmarks and the `make run` demo alike.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from types import TracebackType
from typing import Final, Self

from aiohttp import web

HOST: Final = "127.0.0.1"
START_STOP_TIMEOUT_SECONDS: Final = 30


class LoopbackServer:
    """An aiohttp application served on loopback from a background thread."""

    def __init__(self, port: int = 0) -> None:
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None

    def build_app(self) -> web.Application:
        raise NotImplementedError

    def ssl_context(self) -> ssl.SSLContext | None:
        """The server's TLS context; None serves plain http."""
        return None

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> Self:
        ready = threading.Event()
        failure: list[BaseException] = []

        def serve() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._start_site())
            except BaseException as error:  # reported to the starting thread
                failure.append(error)
                ready.set()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._stop_site())
            loop.close()

        self._thread = threading.Thread(target=serve, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not ready.wait(START_STOP_TIMEOUT_SECONDS):
            raise TimeoutError(f"{type(self).__name__} did not start")
        if failure:
            raise failure[0]
        return self

    async def _start_site(self) -> None:
        # Graph pages of 999 users are large; keep-alive like a real service.
        self._runner = web.AppRunner(self.build_app(), access_log=None, handle_signals=False)
        await self._runner.setup()
        # Bind here (port 0 = the OS picks) so no other process can take the port in between.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((HOST, self.port))
        self.port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock, ssl_context=self.ssl_context()).start()

    async def _stop_site(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(START_STOP_TIMEOUT_SECONDS)
        self._loop = None
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
