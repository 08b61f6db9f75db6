"""README's rotation runbook end to end, with the reference client through the development host:
a device that pinned only the first key follows current -> next published -> next signs (old
published) -> old retired through `/api/jwks/signed`, and never refuses a valid bundle on the way.
Each runbook step is a settings change, so each is its own host (as a restart is in Azure); the
four start together, and the client runs in-process (its `main`, exit code and output as on a
device) to keep this within a few seconds."""

from __future__ import annotations

import contextlib
import io
import json
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from client.cmbootstrap_client import main as client_main
from devhost.azurite import StorageAccount
from devtools.fakes.entra import EntraIssuer
from shared.bundles import PublicKey
from tests.support.devhost import DevHostProcess
from tests.support.keys import write_signing_key
from tests.support.settings import product_env


def key_file(path: Path) -> str:
    """A PEM signing key at `path`; its RFC 7638 thumbprint (the kid devices pin)."""
    return PublicKey(write_signing_key(path).public_key()).kid


@dataclass(frozen=True, slots=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


class Device:
    """One device running the reference client with its own pinned key set."""

    def __init__(self, folder: Path, token_file: Path) -> None:
        folder.mkdir()
        self.pin = folder / "pinned-jwks.json"
        self.token_file = token_file
        self.id = str(uuid.uuid4())

    def client(self, *args: str) -> Run:
        stdout, stderr = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
            code = client_main(list(args))
        return Run(code, stdout.getvalue(), stderr.getvalue())

    def pin_first(self, host: DevHostProcess) -> Run:
        return self.client("pin", "--api", host.url("/api"), "--out", str(self.pin))

    def install(self, host: DevHostProcess) -> Run:
        """The install path: follow a rotation if signed by a pinned key, fetch, verify."""
        return self.client(
            "bundle",
            "--api",
            host.url("/api"),
            "--jwks",
            str(self.pin),
            "--auth",
            "user",
            "--token-file",
            str(self.token_file),
            "--device-id",
            self.id,
            "--json",
        )

    def pinned(self) -> list[str]:
        return [key["kid"] for key in json.loads(self.pin.read_text())["keys"]]


@pytest.fixture
def token_file(tmp_path: Path, entra_issuer: EntraIssuer) -> Iterator[Path]:
    path = tmp_path / "token"
    path.write_text(entra_issuer.mint_access_token())
    yield path
    path.unlink()


def test_devices_follow_the_rotation_runbook_and_never_refuse_a_valid_bundle(
    private_account: StorageAccount, entra_issuer: EntraIssuer, tmp_path: Path, token_file: Path
):
    first, second = tmp_path / "first.pem", tmp_path / "second.pem"
    k1, k2 = key_file(first), key_file(second)
    follower = Device(tmp_path / "follower", token_file)
    late = Device(tmp_path / "late", token_file)  # pinned K1 and slept through step 1

    def host(current: Path, second_key: Path | None = None) -> DevHostProcess:
        extra = {"BUNDLE_SIGNING_NEXT_KEY_FILE": str(second_key)} if second_key else {}
        return DevHostProcess(
            product_env(
                private_account.connection_string,
                AAD_AUTHORITY_HOST=entra_issuer.authority_host,
                BUNDLE_SIGNING_KEY_FILE=str(current),
                BOOTSTRAP_AUTH="user",
                **extra,
            )
        )

    hosts = [host(first), host(first, second), host(second, first), host(second)]
    with contextlib.ExitStack() as stack:
        for started in ThreadPoolExecutor(len(hosts)).map(DevHostProcess.start, hosts):
            stack.callback(started.__exit__, None, None, None)
        before, announced, swapped, retired = hosts

        # First setup: only K1 exists; the thumbprint is printed to compare out of band.
        pinned = follower.pin_first(before)
        assert pinned.returncode == 0, pinned.stderr
        assert f"{k1}  current (signs)" in pinned.stdout
        assert late.pin_first(before).returncode == 0
        assert follower.pinned() == late.pinned() == [k1]

        steps = [
            ("1. K2 published as next", announced, [k1, k2], k1),
            ("2. K2 signs, K1 still published", swapped, [k2, k1], k2),
            ("3. K1 retired", retired, [k2], k2),
        ]
        for step, service, expect_pinned, expect_kid in steps:
            run = follower.install(service)
            assert run.returncode == 0, f"{step}: {run.stderr}"
            assert json.loads(run.stdout)["kid"] == expect_kid, step
            assert follower.pinned() == expect_pinned, step

        # A device that slept through step 1 cannot trust K2's set with K1 alone (README: keep
        # step 1 until every device has run, or ship the new pin with the deployment).
        before_late = late.pin.read_bytes()
        stranded = late.install(swapped)
        assert stranded.returncode == 2
        assert "signed by a key that is not pinned" in stranded.stderr
        assert "kid is not in the pinned key set" in stranded.stderr
        assert late.pin.read_bytes() == before_late
