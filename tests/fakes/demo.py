"""`make run` demo: loopback stand-ins for Graph, managed identity and Entra ID, Development only.

For each of GRAPH_BASE_URL, IDENTITY_ENDPOINT and AAD_AUTHORITY_HOST that points at a loopback
port, start the matching fake there: a sample directory of DEMO users (the same Graph server the
tests use), the App Service managed-identity endpoint, and the Entra issuer. Settings that point
at a real tenant start nothing, so the app talks to the real services. Outside Development this
refuses to start anything.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Final
from urllib.parse import urlsplit

from shared.settings import DEVELOPMENT, is_loopback_host
from tests.fakes.graph import FakeGraph
from tests.fakes.identity import FakeManagedIdentity

DEMO_USERS: Final = 3000
DEMO_DOMAIN: Final = "demo.contoso.example"


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
def demo_servers(values: Mapping[str, str], host_url: str | None = None) -> Iterator[list[str]]:
    """Start the loopback demo servers `values` point at; yield lines for the console. With
    `host_url` (the development host's address) the demo data is filled in once it runs."""
    environment = values.get("AZURE_FUNCTIONS_ENVIRONMENT", "")
    if environment != DEVELOPMENT:
        raise DemoRefused(
            f"the demo directory and token servers run only in {DEVELOPMENT} "
            f"(AZURE_FUNCTIONS_ENVIRONMENT is {environment or 'unset'!r})"
        )
    lines: list[str] = []
    with contextlib.ExitStack() as stack:
        identity = _identity(values, stack, lines)
        _graph(values, identity, stack, lines)
        _issuer(values, stack, lines)
        if host_url and identity is not None and any("DEMO Microsoft Graph" in x for x in lines):
            from tests.fakes.demo_fleet import DemoSeeder

            DemoSeeder(values, host_url).start()
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
) -> None:
    where = _loopback(values.get("GRAPH_BASE_URL"))
    if where is None:
        return
    port, path = where
    if identity is None or path.rstrip("/") != "/v1.0":
        lines.append(
            "DEMO Graph not started: it needs GRAPH_BASE_URL http://127.0.0.1:PORT/v1.0 and a "
            "loopback IDENTITY_ENDPOINT with IDENTITY_HEADER to mint its tokens"
        )
        return
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


def _issuer(values: Mapping[str, str], stack: contextlib.ExitStack, lines: list[str]) -> None:
    where = _loopback(values.get("AAD_AUTHORITY_HOST"))
    if where is None:
        return
    from tests.fakes.entra import EntraIssuer  # the bundles capability's issuer

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
