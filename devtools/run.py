"""`make run`: Azurite, the loopback demo servers (Development) and the host, on one Ctrl-C.

1. copies local.settings.sample.json to local.settings.json when there is none (and says so);
2. loads its Values into the environment without overriding variables already set;
3. checks the settings (one line naming a bad one, exit 1);
4. starts Azurite on its default ports, persisted in `.azurite/`, unless something answers
   there already (then it is reused); only when AzureWebJobsStorage is the development storage;
5. in Development, starts the loopback demo servers of `devtools/demo.py`
   (demo Graph, identity, Entra issuer, and a demo device with the client commands to try);
6. runs the development host on `--port` and prints the URLs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import socket
import sys
from collections.abc import Iterator, Mapping
from typing import Final

from devhost import __main__ as host_main
from devhost.azurite import HOST, REPO_ROOT, Azurite, AzuritePorts
from devhost.config import HostConfigError, load_local_settings
from devtools.demo import demo_servers
from shared.errors import SettingError
from shared.settings import Settings

SAMPLE: Final = REPO_ROOT / "local.settings.sample.json"
LOCAL: Final = REPO_ROOT / "local.settings.json"
AZURITE_DATA: Final = REPO_ROOT / ".azurite"


def _answers(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((HOST, port), timeout=0.5):
        return True
    return False


def _uses_development_storage(environ: Mapping[str, str]) -> bool:
    value = environ.get("AzureWebJobsStorage", "").replace(" ", "").lower()
    return value == "usedevelopmentstorage=true"


@contextlib.contextmanager
def azurite_for(environ: Mapping[str, str]) -> Iterator[None]:
    if not _uses_development_storage(environ):
        print("AzureWebJobsStorage is not the development storage: not starting Azurite")
        yield
        return
    ports = AzuritePorts.default()
    if _answers(ports.queue) and _answers(ports.table):
        print(f"Azurite: reusing what answers on {HOST}:{ports.queue} and {HOST}:{ports.table}")
        yield
        return
    with Azurite(ports, location=AZURITE_DATA):
        print(f"Azurite: started on {HOST}:{ports.blob}-{ports.table}, data in {AZURITE_DATA}")
        yield


@contextlib.contextmanager
def demo_servers_for(settings: Settings, environ: Mapping[str, str], port: int) -> Iterator[None]:
    """The loopback Graph / identity / issuer servers and the demo device, in Development."""
    if not settings.is_development:
        yield
        return
    with demo_servers(dict(environ), api_url=f"http://{HOST}:{port}/api", seed=True) as lines:
        for line in lines:
            print(line)
        yield


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devtools.run", description=__doc__)
    parser.add_argument("--port", type=int, default=7071)
    args = parser.parse_args(argv)
    if not LOCAL.exists():
        shutil.copyfile(SAMPLE, LOCAL)
        print(f"Created {LOCAL.name} from {SAMPLE.name}: edit it to point at your tenant")
    try:
        load_local_settings(REPO_ROOT, os.environ)
        settings = Settings.from_env(os.environ)
    except (HostConfigError, SettingError) as error:
        print(f"setting error: {error}", file=sys.stderr)
        return 1
    with azurite_for(os.environ), demo_servers_for(settings, os.environ, args.port):
        return host_main.main(["--port", str(args.port), "--script-root", str(REPO_ROOT)])


if __name__ == "__main__":
    sys.exit(main())
