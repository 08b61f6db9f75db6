"""`python -m devhost --port PORT [--script-root DIR] [--host 127.0.0.1]`: run a function app.

Loads local.settings.json `Values` (unless DEVHOST_NO_LOCAL_SETTINGS=1) without overriding the
environment, imports `function_app.app` from the script root and serves it until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from pathlib import Path

from devhost.config import HostConfigError, load_local_settings, local_settings_disabled

# Identifiers passed with `extra=` (the project's logging convention), shown after the message.
_IDENTIFIERS = (
    "function",
    "invocationId",
    "runId",
    "tenantId",
    "deviceId",
    "reportId",
    "jti",
    "messageId",
)


class _ConsoleFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        found = [f"{key}={getattr(record, key)}" for key in _IDENTIFIERS if hasattr(record, key)]
        if not found:
            return text
        first, newline, rest = text.partition("\n")  # keep a traceback below the fields
        return f"{first} [{' '.join(found)}]{newline}{rest}"


def configure_logging() -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(_ConsoleFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler], force=True)
    # The Azure SDKs log every request at INFO; keep their warnings only.
    logging.getLogger("azure").setLevel(logging.WARNING)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument("--port", type=int, default=7071)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument(
        "--script-root",
        type=Path,
        default=Path.cwd(),
        help="folder with function_app.py and host.json (default: the current folder)",
    )
    return parser.parse_args(argv)


async def serve(script_root: Path, host: str, port: int) -> None:
    from devhost.host import DevHost  # imports the function app: after settings are loaded

    devhost = DevHost(script_root, os.environ, host=host, port=port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await devhost.serve(stop)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging()
    script_root: Path = args.script_root.resolve()
    try:
        if not local_settings_disabled():
            added = load_local_settings(script_root, os.environ)
            if added:
                print(f"Loaded {len(added)} settings from local.settings.json", flush=True)
        # As Azure sets it: the host name devices use, which device proofs (`htu`) must name.
        os.environ.setdefault("WEBSITE_HOSTNAME", advertised_host(args.host, args.port))
        asyncio.run(serve(script_root, args.host, args.port))
    except HostConfigError as error:
        print(f"devhost: {error}", file=sys.stderr, flush=True)
        return 2
    return 0


def advertised_host(bind: str, port: int) -> str:
    """`host:port` of this host's own address; `localhost` when bound to every interface."""
    host = "localhost" if bind in ("0.0.0.0", "::", "") else bind
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


if __name__ == "__main__":
    sys.exit(main())
