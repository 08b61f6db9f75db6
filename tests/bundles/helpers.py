"""Helpers of the bundle tests: a development host serving bundles, and checks on what it signs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import jwt

from devtools.fakes.entra import EntraIssuer
from shared.names import BUNDLE_ISSUANCE
from shared.storage import Storage
from tests.support.devhost import DevHostProcess
from tests.support.settings import TENANT_ID


@dataclass
class BundleService:
    """A host serving `/api/bundle` and `/api/jwks`, the storage it audits to, an HTTP client."""

    host: DevHostProcess
    storage: Storage
    issuer: EntraIssuer
    http: httpx.AsyncClient

    async def get_bundle(
        self, device_id: str, token: str | None, nonce: str = "n0nce-abcdef", **headers: str
    ) -> httpx.Response:
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        params = {"deviceId": device_id, "nonce": nonce}
        return await self.http.get(self.host.url("/api/bundle"), params=params, headers=headers)

    async def jwks(self) -> dict[str, Any]:
        response = await self.http.get(self.host.url("/api/jwks"))
        assert response.status_code == 200, response.text
        document: dict[str, Any] = response.json()
        return document

    async def audit_rows(self, device_id: str) -> list[dict[str, Any]]:
        table = await self.storage.table(BUNDLE_ISSUANCE)
        query = "PartitionKey eq @tenant and sub eq @device"
        params = {"tenant": TENANT_ID, "device": device_id}
        return [dict(row) async for row in table.query_entities(query, parameters=params)]


def verify_with_jwks(jws: str, jwks: dict[str, Any]) -> dict[str, Any]:
    """The bundle's claims, verified with the one published key its `kid` names."""
    kid = jwt.get_unverified_header(jws)["kid"]
    [jwk] = [key for key in jwks["keys"] if key["kid"] == kid]
    claims: dict[str, Any] = jwt.decode(
        jws, jwt.PyJWK(jwk).key, algorithms=["RS256"], audience="ccmsetup"
    )
    return claims
