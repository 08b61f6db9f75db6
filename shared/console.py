"""The admin console's files (`GET /api/console`, `GET /api/console/{file}`, function `console`).

The console is static HTML, CSS and JavaScript in the repo's `console/` folder plus MSAL.js,
which `make console` copies from node_modules into `console/vendor/` (git-ignored, deployed:
node_modules is not). Every answer carries a strict Content-Security-Policy: scripts and styles
only from this app (no inline script or style), network calls only to this app and the Entra
authority. `config.json` tells the page how to sign in:
- `msal`: authorization code + PKCE with MSAL.js against `AAD_AUTHORITY_HOST` for the server
  app's `Console.Read` scope (the app registration lists `/api/console` as a SPA redirect URI);
- `demo`: only in Development with a loopback http authority (which MSAL.js refuses: it needs
  https), the page asks the demo issuer for an admin token and uses it exactly as an MSAL
  token: a Bearer header on every admin call, sign-in again on 401.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from shared.errors import NotFound
from shared.settings import Settings, is_loopback_host

STATIC_ROOT: Final = Path(__file__).resolve().parents[1] / "console"
CONSOLE_SCOPE: Final = "Console.Read"
# Served name -> (file under console/, content type).
_FILES: Final = {
    "": ("index.html", "text/html; charset=utf-8"),
    "console.js": ("console.js", "text/javascript; charset=utf-8"),
    "console.css": ("console.css", "text/css; charset=utf-8"),
    "msal-browser.js": ("vendor/msal-browser.min.js", "text/javascript; charset=utf-8"),
}


@dataclass(frozen=True, slots=True)
class StaticFile:
    body: bytes
    content_type: str


def console_file(name: str | None) -> StaticFile:
    """The console file served as `name` (None or "" is the page itself); 404 otherwise."""
    entry = _FILES.get(name or "")
    if entry is None:
        raise NotFound("The console has no such file.")
    body = _read(entry[0])
    if body is None:
        raise NotFound(f"{entry[0]} is not built: run `make console` before deploying.")
    return StaticFile(body, entry[1])


@cache
def _read(relative: str) -> bytes | None:
    path = STATIC_ROOT / relative
    return path.read_bytes() if path.is_file() else None


def demo_sign_in(settings: Settings) -> bool:
    parts = urlsplit(settings.authority_host)
    return settings.is_development and parts.scheme == "http" and is_loopback_host(parts.hostname)


def console_config(settings: Settings) -> dict[str, Any]:
    authority = f"{settings.authority_host}/{settings.tenant_id}"
    demo = demo_sign_in(settings)
    return {
        "signIn": "demo" if demo else "msal",
        "clientId": settings.server_app_id,
        "authority": authority,
        "scopes": [f"{settings.resource_uri}/{CONSOLE_SCOPE}"],
        "demoTokenUrl": f"{authority}/demo/admin-token" if demo else None,
    }


def security_headers(settings: Settings) -> dict[str, str]:
    parts = urlsplit(settings.authority_host)
    authority_origin = f"{parts.scheme}://{parts.netloc}"
    policy = "; ".join(
        (
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src 'self' {authority_origin}",
            f"frame-src {authority_origin}",
            "base-uri 'none'",
            "form-action 'none'",
            "frame-ancestors 'none'",
        )
    )
    return {
        "Content-Security-Policy": policy,
        "X-Content-Type-Options": "nosniff",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-cache",
    }
