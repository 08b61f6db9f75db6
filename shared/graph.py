"""Microsoft Graph read as bytes through msgraph-sdk's request adapter: the one Graph client.

The adapter keeps the SDK's auth (azure-identity: managed identity in Azure) and middleware
(retry honouring Retry-After on 429/503/504, redirects, telemetry); we skip its typed models,
which cost ~8 ms of CPU per user, and parse the JSON ourselves. Discovery pages users through it
(`shared.discovery`); device proofs read one device per lookup (`shared.auth`).
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import urlsplit

import httpx
from azure.core.credentials_async import AsyncTokenCredential
from azure.core.exceptions import ClientAuthenticationError
from kiota_abstractions.api_client_builder import register_default_deserializer
from kiota_abstractions.api_error import APIError
from kiota_abstractions.method import Method
from kiota_abstractions.request_information import RequestInformation
from kiota_authentication_azure.azure_identity_authentication_provider import (
    AzureIdentityAuthenticationProvider,
)
from kiota_http.middleware.options import RetryHandlerOption
from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
from msgraph.generated.models.o_data_errors.o_data_error import ODataError
from msgraph.graph_request_adapter import GraphRequestAdapter
from msgraph.graph_request_adapter import options as graph_default_options
from msgraph_core import GraphClientFactory  # type: ignore[import-untyped]

from shared.errors import BootstrapError
from shared.settings import is_loopback_host

_ERROR_MAP: Final = {"XXX": ODataError}
# Codes Graph uses when a delta link can no longer be followed.
_RESYNC_CODES: Final = frozenset({"syncStateNotFound", "resyncRequired", "syncStateInvalid"})
DEFAULT_TIMEOUT: Final = httpx.Timeout(60.0, connect=10.0)


class GraphError(BootstrapError):
    """Graph failed beyond the SDK's retries (status, connection reset, timeout)."""


class DeltaLinkExpired(BootstrapError):
    """Graph no longer knows the delta link (410 Gone, syncStateNotFound, resyncRequired)."""


class GraphClient:
    """GETs JSON documents from one Graph root (GRAPH_BASE_URL) with a token credential.

    `max_retries` overrides the SDK's retries (3, with growing delays) for callers that answer a
    waiting device: they give up at once and let the device retry after `Retry-After`.
    """

    def __init__(
        self,
        base_url: str,
        credential: AsyncTokenCredential,
        *,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        max_retries: int | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        host = urlsplit(self.base_url).hostname or ""
        auth = AzureIdentityAuthenticationProvider(
            credential, scopes=[_scope_for(host)], allowed_hosts=[host]
        )
        self._client = GraphClientFactory.create_with_default_middleware(
            client=httpx.AsyncClient(timeout=timeout), options=graph_default_options
        )
        self._adapter = GraphRequestAdapter(auth, client=self._client)
        self._adapter.base_url = self.base_url
        self._retry = None if max_retries is None else RetryHandlerOption(max_retries=max_retries)
        # GraphServiceClient registers this; without it an error body (ODataError) is unreadable.
        register_default_deserializer(JsonParseNodeFactory)

    async def get_json(self, url: str) -> dict[str, Any]:
        """The JSON object at `url`; `GraphError` (or `DeltaLinkExpired`) when Graph fails."""
        info = RequestInformation(Method.GET)
        info.url = url
        info.headers.try_add("Accept", "application/json")
        if self._retry is not None:
            info.add_request_options([self._retry])
        try:
            raw = await self._adapter.send_primitive_async(info, "bytes", _ERROR_MAP)
        except ODataError as error:
            code = error.error.code if error.error and error.error.code else ""
            if error.response_status_code == 410 or code in _RESYNC_CODES:
                raise DeltaLinkExpired(
                    f"Graph answered {error.response_status_code} {code or 'Gone'}"
                ) from error
            raise GraphError(f"Graph answered {error.response_status_code} {code}") from error
        except APIError as error:
            raise GraphError(f"Graph answered {error.response_status_code}") from error
        except httpx.HTTPError as error:
            raise GraphError(f"Graph connection failed: {type(error).__name__}") from error
        except ClientAuthenticationError as error:
            # The message may quote the identity endpoint's answer: keep only what failed.
            raise GraphError(f"no token for Graph: {type(error).__name__}") from error
        try:
            body = json.loads(raw or b"{}")
        except ValueError as error:
            raise GraphError("Graph sent a document that is not JSON") from error
        if not isinstance(body, dict):
            raise GraphError("Graph sent a document that is not a JSON object")
        return body

    async def close(self) -> None:
        await self._client.aclose()


def _scope_for(host: str) -> str:
    """Graph's scope for its cloud (graph.microsoft.us, ...); a loopback Graph stands in for
    the global one, so it gets the global scope."""
    if is_loopback_host(host) or not host:
        return "https://graph.microsoft.com/.default"
    return f"https://{host}/.default"
