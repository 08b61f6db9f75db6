"""Microsoft Graph through msgraph-sdk's request adapter, answers read as bytes.

The adapter keeps the SDK's auth (azure-identity) and middleware (retry honouring Retry-After on
429/503/504, redirects, telemetry); we skip its typed models, which cost ~8 ms of CPU per user,
and follow `@odata.nextLink` / `@odata.deltaLink` ourselves because `PageIterator` drops the
delta link. Pages of users and groups (`GraphClient.page`) and the few JSON calls that manage
change-notification subscriptions (`GraphClient.send`) share one client.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from azure.identity.aio import DefaultAzureCredential
from kiota_abstractions.api_client_builder import register_default_deserializer
from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_request_adapter import options as graph_default_options
from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]

from shared.errors import BootstrapError
from shared.settings import is_loopback_host

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
_ERROR_MAP: Final = {"XXX": ODataError}
# Codes Graph uses when a delta link can no longer be followed.
_RESYNC_CODES: Final = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})
_TIMEOUT: Final = httpx.Timeout(60.0, connect=10.0)


class GraphError(BootstrapError):
    """Graph failed beyond the SDK's retries (status, connection reset, timeout)."""


class DeltaLinkExpired(BootstrapError):
    """Graph no longer knows the delta link (410 Gone, syncStateNotFound, resyncRequired)."""


class GraphNotFound(GraphError):
    """Graph answered 404: the object (a subscription) does not exist (any more)."""


@dataclass(frozen=True, slots=True)
class GraphPage:
    items: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None


class GraphClient:
    """Reads pages from, and sends JSON to, one Graph root (GRAPH_BASE_URL) with a credential."""

    def __init__(self, base_url: str, credential: AsyncTokenCredential) -> None:
        self.base_url = base_url.rstrip("/")
        host = urlsplit(self.base_url).hostname or ""
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[_scope_for(host)], allowed_hosts=[host]
        )
        self._client = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(timeout=_TIMEOUT), options=graph_default_options
        )
        self._adapter = GraphRequestAdapter(auth, client=self._client)
        self._adapter.base_url = self.base_url
        # GraphServiceClient registers this; without it an error body (ODataError) is unreadable.
        register_default_deserializer(JsonParseNodeFactory)

    def users_delta_url(self, *, latest: bool = False) -> str:
        """The first delta request; `latest` asks only for a delta link valid from now."""
        query = {"$select": SELECT} | ({"$deltatoken": "latest"} if latest else {})
        return f"{self.base_url}/users/delta?{urlencode(query, safe='$,')}"

    def users_list_url(self) -> str:
        query = {"$select": SELECT, "$top": str(LIST_PAGE_SIZE)}
        return f"{self.base_url}/users?{urlencode(query, safe='$,')}"

    def groups_delta_url(self, group_ids: tuple[str, ...] = ()) -> str:
        """`/groups/delta` with members; `group_ids` (at most 50) narrows it to those groups."""
        query = {"$select": GROUP_SELECT}
        if group_ids:
            query["$filter"] = " or ".join(f"id eq '{group_id}'" for group_id in group_ids)
        return f"{self.base_url}/groups/delta?{urlencode(query, safe='$,')}"

    async def page(self, url: str) -> GraphPage:
        body = await self._request(Method.GET, url) or {}
        return GraphPage(
            items=list(body.get("value") or ()),
            next_link=body.get("@odata.nextLink"),
            delta_link=body.get("@odata.deltaLink"),
        )

    async def send(
        self, method: Method, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        """A JSON call under the Graph root (`/subscriptions/...`); None for an empty answer."""
        return await self._request(method, f"{self.base_url}{path}", body)

    async def _request(
        self, method: Method, url: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any] | None:
        info = RequestInformation(method)
        info.url = url
        info.headers.try_add("Accept", "application/json")
        if body is not None:
            info.set_stream_content(json.dumps(body).encode(), "application/json")
        try:
            raw = await self._adapter.send_primitive_async(info, "bytes", _ERROR_MAP)
        except ODataError as error:
            code = error.error.code if error.error and error.error.code else ""
            status = error.response_status_code
            if status == 410 or code in _RESYNC_CODES:
                raise DeltaLinkExpired(f"Graph answered {status} {code or 'Gone'}") from error
            if status == 404:
                raise GraphNotFound(f"Graph answered 404 {code}") from error
            raise GraphError(f"Graph answered {status} {code}") from error
        except APIError as error:
            raise GraphError(f"Graph answered {error.response_status_code}") from error
        except httpx.HTTPError as error:
            raise GraphError(f"Graph connection failed: {type(error).__name__}") from error
        except ClientAuthenticationError as error:
            # The message may quote the identity endpoint's answer: keep only what failed.
            raise GraphError(f"no token for Graph: {type(error).__name__}") from error
        if not raw:
            return None
        try:
            answer = json.loads(raw)
        except ValueError as error:
            raise GraphError("Graph sent an answer that is not JSON") from error
        return answer if isinstance(answer, dict) else None

    async def close(self) -> None:
        await self._client.aclose()


def _scope_for(host: str) -> str:
    """Graph's scope for its cloud (graph.microsoft.us, ...); a loopback Graph stands in for
    the global one, so it gets the global scope."""
    if is_loopback_host(host) or not host:
        return "https://graph.microsoft.com/.default"
    return f"https://{host}/.default"


@contextlib.asynccontextmanager
async def graph_client(base_url: str) -> AsyncIterator[GraphClient]:
    """A client with the app's own identity: the managed identity in Azure (IDENTITY_ENDPOINT /
    IDENTITY_HEADER), its application permissions (User.Read.All, GroupMember.Read.All)."""
    credential = DefaultAzureCredential()
    graph = GraphClient(base_url, credential)
    try:
        yield graph
    finally:
        await graph.close()
        await credential.close()
