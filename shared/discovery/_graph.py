"""Discovery's view of Microsoft Graph: pages of users and groups, read as bytes through the one
Graph client (`shared.graph`), and the JSON calls that manage change-notification subscriptions.

We follow `@odata.nextLink` / `@odata.deltaLink` ourselves because msgraph-sdk's `PageIterator`
drops the delta link.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

from azure.core.credentials_async import AsyncTokenCredential
from kiota_abstractions.method import Method

from shared.graph import DeltaLinkExpired, GraphClient, GraphError, GraphNotFound
from shared.identity import app_credential

__all__ = [
    "GROUP_FILTER_LIMIT",
    "GROUP_PROPERTIES",
    "GROUP_SELECT",
    "SELECT",
    "USER_PROPERTIES",
    "DeltaLinkExpired",
    "DiscoveryGraph",
    "GraphError",
    "GraphNotFound",
    "GraphPage",
    "graph_client",
]

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
# The AadGroups columns as Graph names them; `members` asks /groups/delta for members@delta.
GROUP_PROPERTIES: Final = ("displayName", "securityEnabled")
GROUP_SELECT: Final = ",".join(("id", *GROUP_PROPERTIES, "members"))
# /groups/delta takes `$filter=id eq '...' or ...` for at most 50 groups.
GROUP_FILTER_LIMIT: Final = 50


@dataclass(frozen=True, slots=True)
class GraphPage:
    items: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None


class DiscoveryGraph:
    """Reads user and group pages from, and sends subscription calls to, one Graph root."""

    def __init__(self, base_url: str, credential: AsyncTokenCredential) -> None:
        self._graph = GraphClient(base_url, credential)
        self.base_url = self._graph.base_url

    def users_delta_url(self, *, latest: bool = False) -> str:
        """The first delta request; `latest` asks only for a delta link valid from now."""
        query = {"$select": SELECT} | ({"$deltatoken": "latest"} if latest else {})
        return f"{self.base_url}/users/delta?{urlencode(query, safe='$,')}"

    def users_list_url(self, page_size: int = LIST_PAGE_SIZE) -> str:
        query = {"$select": SELECT, "$top": str(page_size)}
        return f"{self.base_url}/users?{urlencode(query, safe='$,')}"

    def groups_delta_url(self, group_ids: tuple[str, ...] = ()) -> str:
        """`/groups/delta` with members; `group_ids` (at most 50) narrows it to those groups."""
        query = {"$select": GROUP_SELECT}
        if group_ids:
            query["$filter"] = " or ".join(f"id eq '{group_id}'" for group_id in group_ids)
        return f"{self.base_url}/groups/delta?{urlencode(query, safe='$,')}"

    async def page(self, url: str) -> GraphPage:
        body = await self._graph.get_json(url)
        return GraphPage(
            items=list(body.get("value") or ()),
            next_link=body.get("@odata.nextLink"),
            delta_link=body.get("@odata.deltaLink"),
        )

    async def send(
        self, method: Method, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """A JSON call under the Graph root (`/subscriptions/...`); None for an empty answer."""
        return await self._graph.send(method, path, body)

    async def close(self) -> None:
        await self._graph.close()


@contextlib.asynccontextmanager
async def graph_client(base_url: str) -> AsyncIterator[DiscoveryGraph]:
    """A client with the app's own identity: the managed identity in Azure (IDENTITY_ENDPOINT /
    IDENTITY_HEADER), its application permissions (User.Read.All, GroupMember.Read.All)."""
    credential = app_credential()
    graph = DiscoveryGraph(base_url, credential)
    try:
        yield graph
    finally:
        await graph.close()
        await credential.close()
