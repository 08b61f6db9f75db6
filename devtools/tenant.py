"""The loopback tenant's identifiers: what the fakes use by default and the tests' settings name."""

from __future__ import annotations

from typing import Final

TENANT_ID: Final = "72f988bf-86f1-41af-91ab-2d7cd011db47"
TENANT_NAME: Final = "contoso.onmicrosoft.com"
SERVER_APP_ID: Final = "3b1f0e2a-4c5d-4e6f-8a9b-0c1d2e3f4a5b"
RESOURCE_URI: Final = "https://contososerver"
CLIENT_APP_ID: Final = "9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
