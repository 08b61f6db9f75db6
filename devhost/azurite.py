"""Start the project's pinned Azurite (blob, queue, table) on loopback and stop it on exit.

Used by `make run` (through `devtools.run`), by the tests' session fixture and by the benchmarks.
`python -m devhost.azurite` runs it in the foreground on the default ports.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final

REPO_ROOT: Final = Path(__file__).resolve().parent.parent
AZURITE_BIN: Final = REPO_ROOT / "node_modules" / ".bin" / "azurite"
ACCOUNT: Final = "devstoreaccount1"
ACCOUNT_KEY: Final = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
HOST: Final = "127.0.0.1"
KEEP_ALIVE_SECONDS: Final = "300"  # idle keep-alive, longer than any client pool keeps one


class AzuriteError(RuntimeError):
    """Azurite is not installed, did not start, or did not answer in time."""


def free_port() -> int:
    """A port that was free a moment ago on loopback (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True, slots=True)
class AzuritePorts:
    blob: int
    queue: int
    table: int

    @classmethod
    def default(cls) -> AzuritePorts:
        return cls(10000, 10001, 10002)

    @classmethod
    def free(cls) -> AzuritePorts:
        return cls(free_port(), free_port(), free_port())


@dataclass(frozen=True, slots=True)
class AzuriteTls:
    """A PEM certificate and key for https, and whether to accept OAuth bearer tokens."""

    cert: Path
    key: Path
    oauth: bool = False

    def arguments(self) -> list[str]:
        oauth = ["--oauth", "basic"] if self.oauth else []
        return ["--cert", str(self.cert), "--key", str(self.key), *oauth]


@dataclass(frozen=True, slots=True)
class StorageAccount:
    """One storage account of a running Azurite: its own blobs, queues and tables."""

    name: str
    ports: AzuritePorts
    scheme: str = "http"

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol={self.scheme};AccountName={self.name};"
            f"AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint={self.service_uri('blob')};"
            f"QueueEndpoint={self.service_uri('queue')};"
            f"TableEndpoint={self.service_uri('table')};"
        )

    def service_uri(self, service: str) -> str:
        """`http(s)://127.0.0.1:PORT/<account>` of `blob`, `queue` or `table`."""
        return f"{self.scheme}://{HOST}:{getattr(self.ports, service)}/{self.name}"


class Azurite:
    """One Azurite process. Use as a context manager; `connection_string` points at it."""

    def __init__(
        self,
        ports: AzuritePorts,
        *,
        location: Path | None = None,
        tls: AzuriteTls | None = None,
        accounts: Sequence[str] = (),
    ) -> None:
        """In memory unless `location` names a folder (Azurite can't combine the two).

        With `tls`, Azurite serves https with that certificate and, if asked, accepts OAuth
        bearer tokens (`--oauth basic`: it checks issuer, audience and lifetime, not signature).
        `accounts` are storage accounts served beside `devstoreaccount1` (same key), each with
        its own queues and tables: isolation without another Azurite process.
        """
        self.ports = ports
        self.location = location
        self.tls = tls
        self.accounts = tuple(accounts)
        self._process: subprocess.Popen[bytes] | None = None
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the process)

    def account(self, name: str = ACCOUNT) -> StorageAccount:
        if name != ACCOUNT and name not in self.accounts:
            raise AzuriteError(f"Azurite was not started with the account {name}")
        return StorageAccount(name, self.ports, "https" if self.tls else "http")

    @property
    def connection_string(self) -> str:
        return self.account().connection_string

    def service_uri(self, service: str) -> str:
        """`http(s)://127.0.0.1:PORT/devstoreaccount1` of `blob`, `queue` or `table`."""
        return self.account().service_uri(service)

    def start(self, timeout: float = 60.0) -> None:
        if not AZURITE_BIN.exists():
            raise AzuriteError(f"{AZURITE_BIN} is missing: run `npm ci` (make setup does)")
        persistence = (
            ["--location", str(self.location)] if self.location else ["--inMemoryPersistence"]
        )
        if self.location:
            self.location.mkdir(parents=True, exist_ok=True)
        argv = [
            str(AZURITE_BIN),
            "--silent",
            "--disableTelemetry",
            "--skipApiVersionCheck",
            "--loose",
            # Azurite closes an idle keep-alive connection after 5 s, aiohttp keeps one for 15 s:
            # a request on a connection the server is closing fails ("Cannot write to closing
            # transport"), and a pool of such connections can outlast the SDK's 3 retries. Azure
            # Storage keeps idle connections for minutes; so does the emulator now.
            *("--blobKeepAliveTimeout", KEEP_ALIVE_SECONDS),
            *("--queueKeepAliveTimeout", KEEP_ALIVE_SECONDS),
            *("--tableKeepAliveTimeout", KEEP_ALIVE_SECONDS),
            *("--blobHost", HOST, "--blobPort", str(self.ports.blob)),
            *("--queueHost", HOST, "--queuePort", str(self.ports.queue)),
            *("--tableHost", HOST, "--tablePort", str(self.ports.table)),
            *persistence,
            *(self.tls.arguments() if self.tls else ()),
        ]
        env = dict(os.environ)
        if self.accounts:
            # Naming accounts disables the default one unless it is named too.
            names = (ACCOUNT, *self.accounts)
            env["AZURITE_ACCOUNTS"] = ";".join(f"{name}:{ACCOUNT_KEY}" for name in names)
        self._process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
        self._wait_until_listening(timeout)

    def _wait_until_listening(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        pending = [self.ports.blob, self.ports.queue, self.ports.table]
        while pending:
            if self._process is not None and self._process.poll() is not None:
                raise AzuriteError(
                    f"Azurite exited with {self._process.returncode}: {self.output()}"
                )
            if time.monotonic() > deadline:
                raise AzuriteError(f"Azurite did not listen on {pending} within {timeout:.0f}s")
            with contextlib.suppress(OSError), socket.create_connection((HOST, pending[0]), 0.5):
                pending.pop(0)
                continue
            time.sleep(0.05)  # polling a port that is not open yet; bounded by the deadline

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read().decode(errors="replace")[-2000:]

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)

    def __enter__(self) -> Azurite:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        self._log.close()


@contextlib.contextmanager
def running_azurite(
    ports: AzuritePorts | None = None,
    location: Path | None = None,
    tls: AzuriteTls | None = None,
    accounts: Sequence[str] = (),
) -> Iterator[Azurite]:
    """Azurite on `ports`, or on free ports: those can be taken between the pick and Azurite's
    bind when several test workers start at once, so then up to three sets are tried."""
    for attempt in range(1, 4):
        azurite = Azurite(
            ports or AzuritePorts.free(), location=location, tls=tls, accounts=accounts
        )
        try:
            azurite.start()
        except AzuriteError as error:
            azurite.__exit__(None, None, None)
            if ports is not None or attempt == 3 or "EADDRINUSE" not in str(error):
                raise
            continue
        try:
            yield azurite
        finally:
            azurite.__exit__(None, None, None)
        return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Run the project's Azurite in the foreground.")
    parser.add_argument("--blob-port", type=int, default=10000)
    parser.add_argument("--queue-port", type=int, default=10001)
    parser.add_argument("--table-port", type=int, default=10002)
    parser.add_argument("--location", type=Path, help="persist here (default: in memory)")
    args = parser.parse_args(argv)
    ports = AzuritePorts(args.blob_port, args.queue_port, args.table_port)
    if shutil.which("node") is None:
        print("node is required for Azurite", file=sys.stderr)
        return 1
    with Azurite(ports, location=args.location) as azurite:
        print(f"Azurite listening: {azurite.connection_string}", flush=True)
        stop_signals = {signal.SIGINT, signal.SIGTERM}
        signal.pthread_sigmask(signal.SIG_BLOCK, stop_signals)
        signal.sigwait(stop_signals)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
