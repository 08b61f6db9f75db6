"""`make run` demo: loopback stand-ins for Graph, managed identity and Entra ID, Development only.

For each of GRAPH_BASE_URL, IDENTITY_ENDPOINT and AAD_AUTHORITY_HOST that points at a loopback
port, start the matching fake there: a sample directory of DEMO users (the same Graph server the
tests use), the App Service managed-identity endpoint, and the Entra issuer. The demo Graph also
knows one demo device, joined as Entra ID joins a Windows device: its certificate and key are
generated once into a git-ignored folder (`.keys/demo-device/`) and its key is registered in the
device's `alternativeSecurityIds`, so the reference client can prove it. Settings that point at a
real tenant start nothing, so the app talks to the real services. Outside Development this
refuses to start anything.
"""

from __future__ import annotations

import contextlib
import os
import shlex
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from devhost.azurite import REPO_ROOT
from devtools.devices import DeviceIdentity
from devtools.fakes.entra import EntraIssuer
from devtools.fakes.graph import FakeGraph
from devtools.fakes.identity import FakeManagedIdentity
from shared.settings import DEVELOPMENT, is_loopback_host

DEMO_USERS: Final = 3000
DEMO_DOMAIN: Final = "demo.contoso.example"
DEMO_DEVICE_FOLDER: Final = REPO_ROOT / ".keys" / "demo-device"
DEFAULT_API_URL: Final = "http://127.0.0.1:7071/api"


class DemoRefused(RuntimeError):
    """The demo servers run only with AZURE_FUNCTIONS_ENVIRONMENT=Development."""


def _loopback(url: str | None) -> tuple[int, str] | None:
    """(port, path) of an http loopback URL with an explicit port, else None."""
    if not url:
        return None
    parts = urlsplit(url)
    if parts.scheme != "http" or not is_loopback_host(parts.hostname) or not parts.port:
        return None
    return parts.port, parts.path


@contextlib.contextmanager
def demo_servers(
    values: Mapping[str, str],
    *,
    api_url: str = DEFAULT_API_URL,
    device_folder: Path = DEMO_DEVICE_FOLDER,
    seed: bool = False,
) -> Iterator[list[str]]:
    """Start the loopback demo servers `values` point at; yield lines for the console.

    `api_url` is the host's API root (for the printed commands), `device_folder` where the demo
    device's certificate and key live (made on first use); with `seed` the demo data (a full
    discovery and a fleet of device reports) is filled in through the host once it runs."""
    environment = values.get("AZURE_FUNCTIONS_ENVIRONMENT", "")
    if environment != DEVELOPMENT:
        raise DemoRefused(
            f"the demo directory and token servers run only in {DEVELOPMENT} "
            f"(AZURE_FUNCTIONS_ENVIRONMENT is {environment or 'unset'!r})"
        )
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        identity = _identity(values, stack, lines)
        graph = _graph(values, identity, stack, lines)
        _issuer(values, stack, lines)
        if graph is not None:
            _device(values, graph, lines, api_url=api_url, folder=device_folder)
        if seed and identity is not None and any("DEMO Microsoft Graph" in x for x in lines):
            from devtools.demo_fleet import DemoSeeder

            DemoSeeder(values, api_url.removesuffix("/api")).start()
            lines.append("DEMO data: a full discovery and a fleet of device reports follow;")
            lines.append("  'Demo data ready' is printed when the console has them to show")
        if not lines:
            lines.append("Demo: no loopback Graph/identity/issuer configured; using real ones")
        yield lines


def _identity(
    values: Mapping[str, str], stack: contextlib.ExitStack, lines: list[str]
) -> FakeManagedIdentity | None:
    where = _loopback(values.get("IDENTITY_ENDPOINT"))
    header = values.get("IDENTITY_HEADER", "")
    if where is None or not header:
        return None
    port, path = where
    identity = stack.enter_context(FakeManagedIdentity(port, header=header, path=path or "/"))
    lines.append(f"DEMO managed identity (App Service protocol): {identity.endpoint}")
    return identity


def _graph(
    values: Mapping[str, str],
    identity: FakeManagedIdentity | None,
    stack: contextlib.ExitStack,
    lines: list[str],
) -> FakeGraph | None:
    where = _loopback(values.get("GRAPH_BASE_URL"))
    if where is None:
        return None
    port, path = where
    if identity is None or path.rstrip("/") != "/v1.0":
        lines.append(
            "DEMO Graph not started: it needs GRAPH_BASE_URL http://127.0.0.1:PORT/v1.0 and a "
            "loopback IDENTITY_ENDPOINT with IDENTITY_HEADER to mint its tokens"
        )
        return None
    graph = stack.enter_context(
        FakeGraph(
            identity, users=DEMO_USERS, label="DEMO", domain=DEMO_DOMAIN, seed="demo", port=port
        )
    )
    lines.append(
        f"DEMO Microsoft Graph with {DEMO_USERS} sample users (not a real tenant): "
        f"{graph.graph_base_url}"
    )
    lines.append(
        "  discovery fills AadUsers on its schedules; run one now with "
        'POST /admin/functions/discovery_full {"input": ""}'
    )
    return graph


def _issuer(values: Mapping[str, str], stack: contextlib.ExitStack, lines: list[str]) -> None:
    where = _loopback(values.get("AAD_AUTHORITY_HOST"))
    if where is None:
        return
    issuer = stack.enter_context(EntraIssuer(port=where[0]))
    tenant = values.get("AAD_TENANT_ID", "")
    client_app_id = values.get("AAD_CLIENT_APP_ID", "")
    audience = values.get("AAD_SERVER_APP_ID", "")
    device = issuer.mint_access_token(
        tenant_id=tenant, client_app_id=client_app_id, audience=audience
    )
    admin = issuer.mint_access_token(
        tenant_id=tenant,
        client_app_id=client_app_id,
        audience=audience,
        roles=(values.get("ADMIN_ROLE") or "Bootstrap.Admin",),
    )
    issuer.serve_demo_admin_tokens(
        audience=audience, admin_role=values.get("ADMIN_ROLE") or "Bootstrap.Admin"
    )
    lines.append(f"DEMO Entra ID issuer (signs demo tokens only): {issuer.authority_host}")
    lines.append(f"  device token (1 h): export DEVICE_TOKEN={device}")
    lines.append(f"  admin token (1 h):  export ADMIN_TOKEN={admin}")
    lines.append(
        '  try: curl -H "Authorization: Bearer $ADMIN_TOKEN" '
        "http://127.0.0.1:<host port, 7071 by default>/api/discovery/runs"
    )


def demo_device(folder: Path = DEMO_DEVICE_FOLDER) -> DeviceIdentity:
    """The demo device: `device.crt` and `device.key` (0600) in `folder`, generated once."""
    certificate_path, key_path = folder / "device.crt", folder / "device.key"
    if not (certificate_path.exists() and key_path.exists()):
        device = DeviceIdentity.generate()
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(device.private_key_pem())
        certificate_path.write_bytes(device.certificate_pem())
        return device
    certificate = x509.load_pem_x509_certificate(certificate_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    [common_name] = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    return DeviceIdentity(str(common_name.value).lower(), key, certificate)


def demo_device_commands(api_url: str, folder: Path, device_id: str) -> dict[str, str]:
    """The reference client's first-setup pin and, per BOOTSTRAP_AUTH mode, the one command
    that fetches and verifies a bundle (the user modes read $DEVICE_TOKEN, printed above)."""
    client = "python client/cmbootstrap_client.py"  # run from the repository root
    if folder.is_relative_to(REPO_ROOT):
        folder = folder.relative_to(REPO_ROOT)
    pin = shlex.quote(str(folder / "pinned-jwks.json"))
    device = (
        f"--cert {shlex.quote(str(folder / 'device.crt'))} "
        f"--key {shlex.quote(str(folder / 'device.key'))}"
    )
    api = shlex.quote(api_url)
    commands = {"pin": f"{client} pin --api {api} --out {pin}"}
    for auth in ("device", "user", "device+user"):
        token = 'CMBOOTSTRAP_TOKEN="$DEVICE_TOKEN" ' if "user" in auth else ""
        credentials = device if "device" in auth else f"--device-id {device_id}"
        commands[auth] = (
            f"{token}{client} bundle --api {api} --jwks {pin} --auth {auth} {credentials}"
        )
    return commands


def _device(
    values: Mapping[str, str], graph: FakeGraph, lines: list[str], *, api_url: str, folder: Path
) -> None:
    device = demo_device(folder)
    object_id = graph.register_device(device.device_id, device.alternative_security_ids())
    from devtools.demo_profiles import add_demo_groups

    group_lines = add_demo_groups(graph, object_id)
    mode = values.get("BOOTSTRAP_AUTH") or "device"
    commands = demo_device_commands(api_url, folder, device.device_id)
    lines.append(
        f"DEMO device {device.device_id} (Entra ID joined; certificate and key in {folder})"
    )
    lines.append(f"  first setup, pin the signing keys once: {commands['pin']}")
    for auth in ("device", "user", "device+user"):
        marker = "  <- BOOTSTRAP_AUTH now" if auth == mode else ""
        lines.append(f"  BOOTSTRAP_AUTH={auth}:{marker}")
        lines.append(f"    {commands[auth]}")
    lines.extend(group_lines)
    lines.append(
        '  which install profile applies: curl -H "Authorization: Bearer $ADMIN_TOKEN" '
        f"'{api_url}/profiles/resolve?deviceId={device.device_id}'"
    )
