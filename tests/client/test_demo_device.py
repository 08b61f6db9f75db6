"""The `make run` demo device: generated once, registered in the demo Graph, and the commands the
demo prints fetch and verify a bundle with the reference client in every BOOTSTRAP_AUTH mode.

One demo (Graph, identity, issuer) serves three hosts, one per mode, started together; each
printed command runs as printed, in a shell, with `$DEVICE_TOKEN` from the printed export line."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from devhost.azurite import StorageAccount, free_port
from devtools.demo import demo_device, demo_servers
from tests.support.devhost import REPO_ROOT, DevHostProcess
from tests.support.settings import TENANT_ID, product_env

MODES = ("device", "user", "device+user")
DSREGCMD = REPO_ROOT / "devtools" / "samples" / "dsregcmd_hybrid_joined.txt"
BASH = shutil.which("bash") or "/bin/bash"


@pytest.fixture(scope="module")
def own_account(new_account: Callable[[], StorageAccount]) -> StorageAccount:
    """This module's own: its hosts poll queues that other tests' hosts must not drain."""
    return new_account()


def test_the_demo_device_is_generated_once_and_its_key_is_private(tmp_path: Path):
    first = demo_device(tmp_path / "demo-device")
    again = demo_device(tmp_path / "demo-device")

    assert again.device_id == first.device_id
    assert again.certificate == first.certificate
    assert (tmp_path / "demo-device" / "device.key").stat().st_mode & 0o077 == 0


def run_printed(command: str, token: str) -> subprocess.CompletedProcess[str]:
    """A printed command as an admin would paste it: bash, repo root, the venv's python."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return subprocess.run(
        [BASH, "-c", command],
        cwd=REPO_ROOT,
        env={"PATH": path, "DEVICE_TOKEN": token},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_printed_commands_fetch_and_verify_a_bundle_in_every_mode(
    own_account: StorageAccount, tmp_path: Path
):
    values = product_env(
        own_account.connection_string,
        GRAPH_BASE_URL=f"http://127.0.0.1:{free_port()}/v1.0",
        IDENTITY_ENDPOINT=f"http://127.0.0.1:{free_port()}/msi/token",
        IDENTITY_HEADER="demo-header",
        AAD_AUTHORITY_HOST=f"http://127.0.0.1:{free_port()}",
    )
    hosts = {mode: DevHostProcess({**values, "BOOTSTRAP_AUTH": mode}) for mode in MODES}
    folder = tmp_path / "demo-device"
    with (
        demo_servers(values, api_url=hosts["device"].url("/api"), device_folder=folder) as lines,
        contextlib.ExitStack() as stack,
    ):
        for host in ThreadPoolExecutor(len(MODES)).map(DevHostProcess.start, hosts.values()):
            stack.callback(host.__exit__, None, None, None)
        text = "\n".join(lines)
        token = re.search(r"export DEVICE_TOKEN=(\S+)", text)
        assert token is not None
        device_id = demo_device(folder).device_id
        assert f"DEMO device {device_id}" in text
        pin = re.search(r"first setup, pin the signing keys once: (.+)", text)
        assert pin is not None
        pinned = run_printed(pin.group(1), token.group(1))
        assert pinned.returncode == 0, pinned.stderr
        assert "current (signs)" in pinned.stdout

        commands = {}
        for mode in MODES:
            printed = re.search(rf"BOOTSTRAP_AUTH={re.escape(mode)}:.*\n    (.+)", text)
            assert printed is not None, mode
            api = hosts[mode].url("/api")
            commands[mode] = printed.group(1).replace(hosts["device"].url("/api"), api) + " --json"
        # The status reporter proves the same device, its proof bound to the exact body.
        commands["report"] = (
            f"python -m client.cmbootstrap_report --api {hosts['device'].url('/api')} "
            f"--dsregcmd {DSREGCMD} --stage bundle-received --device-id {device_id} "
            f"--tenant-id {TENANT_ID} --auth device --cert {folder / 'device.crt'} "
            f"--key {folder / 'device.key'}"
        )
        with ThreadPoolExecutor(len(commands)) as pool:  # independent: run them together
            secret = token.group(1)
            futures = {
                name: pool.submit(run_printed, line, secret) for name, line in commands.items()
            }
            runs = {name: future.result() for name, future in futures.items()}

        for mode in MODES:
            run = runs[mode]
            assert run.returncode == 0, f"{mode}: {run.stderr}"
            bundle = json.loads(run.stdout)
            assert bundle["claims"]["sub"] == device_id, mode
            assert bundle["argv"][0] == "ccmsetup.exe"
        report = runs["report"]
        assert report.returncode == 0, report.stderr
        assert uuid.UUID(report.stdout.strip())
