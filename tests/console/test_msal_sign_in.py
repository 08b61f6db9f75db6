"""The console's Azure sign-in with the real MSAL.js: authorization code + PKCE against an
https Entra authority, whose endpoints the browser test answers (no network here). Checks what
Entra ID would see (client id, redirect URI, scope, S256 challenge, a verifier that matches it)
and that the console then calls the admin API with the token MSAL obtained. The page gets the
settings an https authority gives (`console_config`); the admin API answers as the fleet's host
does for that token, since Entra's keys cannot be fetched here."""

from __future__ import annotations

import base64
import hashlib
import html
import json
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from playwright.async_api import Page, Request, Route, async_playwright

from devtools.fakes.entra import EntraIssuer
from shared.console import console_config, security_headers
from shared.settings import Settings
from tests.console.conftest import Fleet
from tests.console.test_browser import ARTIFACTS, CHROMIUM, FLAGS, WAIT_MS, rendered, screenshot
from tests.reports.helpers import http
from tests.support.settings import RESOURCE_URI, SERVER_APP_ID, TENANT_ID, product_env

AUTHORITY = "https://login.microsoftonline.com"
pytestmark = pytest.mark.skipif(
    not Path(CHROMIUM).exists(), reason="chromium is not installed (make browser installs it)"
)


class FakeEntra:
    """Answers the browser's calls to the Entra authority as Entra ID does (v2 endpoints)."""

    def __init__(self, issuer: EntraIssuer, access_token: str) -> None:
        self.issuer = issuer
        self.access_token = access_token
        self.authorize: dict[str, str] = {}
        self.token_form: dict[str, str] = {}
        self.oid = str(uuid.uuid4())

    async def handle(self, route: Route, request: Request) -> None:
        url = urlsplit(request.url)
        base = f"{AUTHORITY}/{TENANT_ID}"
        if url.path.endswith("/.well-known/openid-configuration"):
            await route.fulfill(json=self.openid_configuration(base))
        elif "discovery/instance" in url.path:
            await route.fulfill(
                json={
                    "tenant_discovery_endpoint": f"{base}/v2.0/.well-known/openid-configuration",
                    "metadata": [
                        {
                            "preferred_network": "login.microsoftonline.com",
                            "preferred_cache": "login.windows.net",
                            "aliases": ["login.microsoftonline.com", "login.windows.net"],
                        }
                    ],
                }
            )
        elif url.path.endswith("/oauth2/v2.0/authorize"):
            self.authorize = {k: v[0] for k, v in parse_qs(url.query).items()}
            answer = {
                "code": "demo-code",
                "state": self.authorize["state"],
                "client_info": self.client_info(),
            }
            separator = "?" if self.authorize.get("response_mode") == "query" else "#"
            target = self.authorize["redirect_uri"] + separator + urlencode(answer)
            # Entra answers with a redirect; a page that navigates on keeps the way back routed
            # (the browser test cannot intercept a redirect's target).
            page = f'<meta http-equiv="refresh" content="0;url={html.escape(target)}">'
            await route.fulfill(body=page, content_type="text/html")
        elif url.path.endswith("/oauth2/v2.0/token"):
            self.token_form = {k: v[0] for k, v in parse_qs(request.post_data or "").items()}
            await route.fulfill(json=self.tokens(), headers={"Access-Control-Allow-Origin": "*"})
        else:
            await route.fulfill(status=404, json={"error": "not_found"})

    @staticmethod
    def openid_configuration(base: str) -> dict[str, Any]:
        return {
            "issuer": f"{base}/v2.0",
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{base}/oauth2/v2.0/token",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt"],
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "nonce", "tid", "oid"],
            "request_uri_parameter_supported": False,
            "tenant_region_scope": "EU",
            "cloud_instance_name": "microsoftonline.com",
            "cloud_graph_host_name": "graph.windows.net",
            "msgraph_host": "graph.microsoft.com",
            "rbac_url": "https://pas.windows.net",
        }

    def client_info(self) -> str:
        raw = json.dumps({"uid": self.oid, "utid": TENANT_ID}).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    def tokens(self) -> dict[str, Any]:
        now = int(time.time())
        id_token = self.issuer.sign(
            {
                "aud": SERVER_APP_ID,
                "iss": f"{AUTHORITY}/{TENANT_ID}/v2.0",
                "iat": now,
                "nbf": now,
                "exp": now + 3600,
                "nonce": self.authorize.get("nonce", ""),
                "oid": self.oid,
                "sub": "admin-sub",
                "tid": TENANT_ID,
                "ver": "2.0",
                "name": "Adele Admin",
                "preferred_username": "adele@contoso.example",
            }
        )
        return {
            "token_type": "Bearer",
            "scope": f"{RESOURCE_URI}/Console.Read",
            "expires_in": 3600,
            "ext_expires_in": 3600,
            "access_token": self.access_token,
            "id_token": id_token,
            "client_info": self.client_info(),
        }


AZURE_SETTINGS = Settings.from_env(
    product_env("UseDevelopmentStorage=true", AAD_AUTHORITY_HOST=AUTHORITY)
)


async def as_in_azure(route: Route, request: Request) -> None:
    """The console's files with the headers and `config.json` an https authority gives (the
    product's own functions, not a copy)."""
    headers = {name.lower(): value for name, value in security_headers(AZURE_SETTINGS).items()}
    if request.url.endswith("/config.json"):
        config = console_config(AZURE_SETTINGS)
        assert config["signIn"] == "msal"
        await route.fulfill(json=config, headers=headers)
        return
    response = await route.fetch()
    await route.fulfill(response=response, headers=response.headers | headers)


@pytest.fixture
async def msal_page(fleet: Fleet, tmp_path: Path) -> AsyncIterator[Page]:
    async with async_playwright() as playwright:
        context = await playwright.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=FLAGS,
            viewport={"width": 1280, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else await context.new_page()
            page.set_default_timeout(WAIT_MS)
            # The fleet's host signs in with the demo issuer; this page sees the Azure settings.
            await page.route(fleet.service.url("/api/console") + "**", as_in_azure)
            yield page
        finally:
            await context.close()


async def test_msal_signs_in_with_pkce_and_the_console_uses_its_token(
    msal_page: Page, fleet: Fleet
) -> None:
    page, host = msal_page, fleet.service
    access_token = fleet.service.admin_token()  # what Entra would issue for Console.Read
    entra = FakeEntra(fleet.service.issuer, access_token)
    await page.route(f"{AUTHORITY}/**", entra.handle)
    presented: list[str] = []

    async def admin_api(route: Route, request: Request) -> None:
        # Entra's keys cannot be fetched here: the fleet's host answers, with the same token.
        presented.append(request.headers.get("authorization", ""))
        path = request.url.removeprefix(host.url(""))
        answer = http("GET", fleet.service.url(path), token=access_token)
        await route.fulfill(
            status=answer.status,
            body=answer.body,
            headers={"Content-Type": answer.headers["content-type"]},
        )

    await page.route(host.url("/api/devices") + "**", admin_api)
    await page.goto(host.url("/api/console"))
    await page.wait_for_selector("#sign-in-panel:not([hidden])")
    await page.click("#sign-in")
    await rendered(page, "#/overview")

    assert entra.authorize["client_id"] == SERVER_APP_ID
    assert entra.authorize["redirect_uri"] == host.url("/api/console")
    assert entra.authorize["response_type"] == "code"
    assert f"{RESOURCE_URI}/Console.Read" in entra.authorize["scope"].split()
    assert entra.authorize["code_challenge_method"] == "S256"
    verifier = entra.token_form["code_verifier"]
    digest = hashlib.sha256(verifier.encode()).digest()
    assert (
        base64.urlsafe_b64encode(digest).rstrip(b"=").decode() == entra.authorize["code_challenge"]
    )
    assert entra.token_form["grant_type"] == "authorization_code"
    assert "client_secret" not in entra.token_form
    assert presented
    assert set(presented) == {f"Bearer {access_token}"}
    assert await page.text_content("#who") == "adele@contoso.example"
    await screenshot(page, "msal-signed-in")
    assert (ARTIFACTS / "msal-signed-in.png").exists()
