"""Start development hosts by forking a process that has already imported their libraries.

A development host spends ~0.6 s of CPU importing the Azure SDKs, aiohttp and the rest before it
serves anything, and a test run starts ~50 of them (kill -9, scale-out, other settings): about a
fifth of the whole run's CPU on two cores. So each test worker keeps one server process that has
imported those third-party libraries once (never the app or the dev host themselves: the app
reads its settings and configures telemetry at import) and forks it per host. The child gets
exactly the environment, folder, arguments and log file a `subprocess.Popen` would have given
it, then runs `python -m devhost` as `runpy` does; it is a real process of its own (its own pid,
signals, kill -9, exit code).

Protocol: one JSON line per request on the server's stdin, one JSON line per answer on the
descriptor it was given (its stdout is /dev/null, so nothing a child prints can get mixed in).
`spawn` -> `{"pid"}`; `status` -> `{"returncode": int | None}` (the server is the parent and
reaps its children).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
# Third-party libraries the host and the app import (not the app: see above).
PRELOAD: Final = (
    "aiohttp.web",
    "azure.functions",
    "azure.core.pipeline.transport",
    "azure.data.tables.aio",
    "azure.storage.queue.aio",
    "azure.identity.aio",
    "azure.keyvault.keys.aio",
    "azure.keyvault.keys.crypto.aio",
    "cryptography.x509",
    "croniter",
    "httpx",
    "jwt",
    "msgraph_core",
    "kiota_abstractions.request_information",
    "werkzeug.datastructures",
)


def serve(answers_fd: int) -> None:
    """The server's loop (in the server process)."""
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    answers = os.fdopen(answers_fd, "w", buffering=1)
    statuses: dict[int, int] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request["op"] == "spawn":
            answer: dict[str, Any] = {"pid": _spawn(request, answers_fd)}
        else:
            answer = {"returncode": _status(request["pid"], statuses)}
        answers.write(json.dumps(answer) + "\n")


def _status(pid: int, statuses: dict[int, int]) -> int | None:
    if pid not in statuses:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done == 0:
            return None
        statuses[pid] = os.waitstatus_to_exitcode(status)
    return statuses[pid]


def _spawn(request: Mapping[str, Any], answers_fd: int) -> int:
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        os.setpgid(0, 0)
        log = os.open(request["log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
        os.close(answers_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["devhost", *request["args"]]
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.path[0] = request["cwd"]
        import runpy

        runpy.run_module("devhost", run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


class ForkServer:
    """The test worker's side: starts the server once, asks it for hosts."""

    _instance: ForkServer | None = None

    def __init__(self) -> None:
        read_answers, write_answers = os.pipe()
        self._process = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "import sys; from tests.support.forkserver import serve; serve(int(sys.argv[1]))",
                str(write_answers),
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            pass_fds=(write_answers,),
            text=True,
        )
        os.close(write_answers)
        self._answers = os.fdopen(read_answers, "r")
        self._lock = threading.Lock()

    @classmethod
    def shared(cls) -> ForkServer:
        if cls._instance is None or cls._instance._process.poll() is not None:
            cls._instance = cls()
        return cls._instance

    def _ask(self, request: dict[str, Any]) -> dict[str, Any]:
        assert self._process.stdin is not None
        with self._lock:
            self._process.stdin.write(json.dumps(request) + "\n")
            self._process.stdin.flush()
            line = self._answers.readline()
        if not line:
            raise RuntimeError("the host fork server exited")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def spawn(
        self, args: Sequence[str], *, env: Mapping[str, str], cwd: Path, log: str
    ) -> ForkedProcess:
        request = {"op": "spawn", "args": list(args), "env": dict(env), "cwd": str(cwd)}
        answer = self._ask(request | {"log": log})
        return ForkedProcess(self, int(answer["pid"]))

    def returncode(self, pid: int) -> int | None:
        code = self._ask({"op": "status", "pid": pid})["returncode"]
        return None if code is None else int(code)


class ForkedProcess:
    """What the tests use of `subprocess.Popen`, for a host the fork server started."""

    def __init__(self, server: ForkServer, pid: int) -> None:
        self._server = server
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.returncode(self.pid)
        return self.returncode

    def wait(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while self.poll() is None:
            if time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(["devhost"], timeout)
            time.sleep(0.02)  # polling the server for the exit; bounded by the deadline
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)
