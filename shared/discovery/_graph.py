"""Pages of users from Microsoft Graph, read as bytes through the one Graph client
(`shared.graph`). We follow `@odata.nextLink` / `@odata.deltaLink` ourselves because msgraph-sdk's
`PageIterator` drops the delta link.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from azure.core.credentials_async import AsyncTokenCredential

from shared.graph import DeltaLinkExpired, GraphClient, GraphError

__all__ = ["SELECT", "USER_PROPERTIES", "DeltaLinkExpired", "GraphError", "GraphPage", "GraphUsers"]

# The AadUsers columns as Graph names them (id becomes the RowKey).
USER_PROPERTIES: Final = (
    "displayName",
    "userPrincipalName",
    "mail",
    "mailNickname",
    "onPremisesSecurityIdentifier",
    "onPremisesDomainName",
    "onPremisesSamAccountName",
    "onPremisesDistinguishedName",
    "accountEnabled",
)
SELECT: Final = ",".join(("id", *USER_PROPERTIES))
LIST_PAGE_SIZE: Final = 999  # /users honours $top up to 999; /users/delta ignores it (~200)


@dataclass(frozen=True, slots=True)
class GraphPage:
    users: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None


class GraphUsers:
    """Reads user pages from one Graph root (GRAPH_BASE_URL) with a token credential."""

    def __init__(self, base_url: str, credential: AsyncTokenCredential) -> None:
        self._graph = GraphClient(base_url, credential)
        self.base_url = self._graph.base_url

    def delta_url(self, *, latest: bool = False) -> str:
        """The first delta request; `latest` asks only for a delta link valid from now."""
        query = {"$select": SELECT} | ({"$deltatoken": "latest"} if latest else {})
        return f"{self.base_url}/users/delta?{urlencode(query, safe='$,')}"

    def list_url(self) -> str:
        query = {"$select": SELECT, "$top": str(LIST_PAGE_SIZE)}
        return f"{self.base_url}/users?{urlencode(query, safe='$,')}"

    async def page(self, url: str) -> GraphPage:
        body = await self._graph.get_json(url)
        return GraphPage(
            users=list(body.get("value") or ()),
            next_link=body.get("@odata.nextLink"),
            delta_link=body.get("@odata.deltaLink"),
        )

    async def close(self) -> None:
        await self._graph.close()
