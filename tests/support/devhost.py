"""Run the development host (`python -m devhost`) as a process of its own for a test."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Final

from devhost.azurite import free_port
from tests.support.forkserver import ForkedProcess, ForkServer

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
START_TIMEOUT: Final = 60.0
# Settings the libraries read when they are imported (the trusted certificates).
TRUST_SETTINGS: Final = frozenset({"SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE"})
PORT_ATTEMPTS: Final = 3


class DevHostProcess:
    """`python -m devhost --port P [--script-root DIR]` with exactly the environment given.

    The host reads nothing from the test runner's environment beyond PATH and what `env` says,
    so tests are independent of the machine's variables and of local.settings.json.
    """

    def __init__(self, env: Mapping[str, str], *, script_root: Path | None = None) -> None:
        self.port = free_port()
        self.script_root = script_root
        self.base_url = f"http://127.0.0.1:{self.port}"
        self._env = dict(env)
        self._log = tempfile.NamedTemporaryFile(  # noqa: SIM115 (closed in __exit__)
            prefix="devhost-", suffix=".log", delete=False
        )
        self.process: subprocess.Popen[bytes] | ForkedProcess | None = None

    def start(self) -> DevHostProcess:
        """Start and wait until ready; a port taken since `free_port()` picked it (tests run in
        parallel workers) means another port, at most `PORT_ATTEMPTS` times."""
        for attempt in range(1, PORT_ATTEMPTS + 1):
            try:
                return self._start_once()
            except RuntimeError as error:
                if attempt == PORT_ATTEMPTS or "address already in use" not in str(error).lower():
                    raise
                self.port = free_port()
                self.base_url = f"http://127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start_once(self) -> DevHostProcess:
        args = ["--port", str(self.port)]
        if self.script_root is not None:
            args += ["--script-root", str(self.script_root)]
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONUNBUFFERED": "1",
            "DEVHOST_NO_LOCAL_SETTINGS": "1",
            **self._env,
        }
        if TRUST_SETTINGS & env.keys():
            # aiohttp builds its TLS context when imported: a preloaded one would not trust this.
            self.process = subprocess.Popen(
                [sys.executable, "-m", "devhost", *args],
                cwd=REPO_ROOT,
                env=env,
                stdout=self._log,
                stderr=subprocess.STDOUT,
            )
        else:
            # `python -m devhost ARGS`, forked from a process that has its libraries imported.
            server = ForkServer.shared()
            self.process = server.spawn(args, env=env, cwd=REPO_ROOT, log=self._log.name)
        self.wait_ready()
        return self

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(
                    f"devhost exited early ({self.process.returncode}):\n{self.output()}"
                )
            try:
                with urllib.request.urlopen(self.base_url + "/admin/host/status", timeout=2) as r:
                    if json.load(r).get("state") == "Running":
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"devhost not ready in {timeout}s:\n{self.output()}")
            time.sleep(0.1)  # polling the host's readiness endpoint; bounded by the deadline

    def output(self) -> str:
        return Path(self._log.name).read_text(errors="replace")

    def url(self, path: str) -> str:
        return self.base_url + path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    def kill(self) -> None:
        """SIGKILL: the host dies at once, as a crashed worker would."""
        self.stop(signal.SIGKILL)

    def __enter__(self) -> DevHostProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()
        if exc is not None:  # a failing test keeps the host's log, and says where it is
            exc.add_note(f"development host log: {self._log.name}")
            return
        os.unlink(self._log.name)
