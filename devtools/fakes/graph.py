"""A Microsoft Graph-compatible loopback server for users: the one fake for tests, bench and demo.

It serves `GET /v1.0/users/delta` and `GET /v1.0/users` the way Graph does for what discovery
uses: `$select`; delta pages of `delta_page_size` users (Graph ignores `$top` there) linked by
opaque `$skiptoken` nextLinks and ending in a `$deltatoken` deltaLink; `$deltatoken=latest`
(an empty page with a deltaLink for "now"); `@removed` entries (`changed` for a soft-deleted,
restorable user, `deleted` for a permanently deleted one); replays (a delta link can be used
again); `/users?$top=999` pages with `$skiptoken`. For a changed user a delta page carries the
selected properties that have ever been set, cleared ones as `null` (Graph's documented
default), so a never-set property is absent.

It also serves `GET /v1.0/devices?$filter=deviceId eq '{id}'&$select=...` (what device proofs
read) over devices a test registers, disables or changes (`register_device`, `disable_device`,
`update_device`).

Every request needs a bearer token minted by the fake managed-identity endpoint. Faults can be
injected for the next matching requests: an HTTP status with `Retry-After` (429/503), a
connection reset mid-body, a slow page, and 410 `syncStateNotFound` for expired delta links.
Requests are counted per endpoint. Groups (`/groups/delta` with `members@delta`) and
change-notification subscriptions are in devtools/fakes/graph_groups.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import re
import secrets
import threading
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from aiohttp import web

from devtools.fakes.graph_groups import GROUP_PAGE_SIZE, MEMBER_CHUNK, GraphGroups
from devtools.fakes.identity import FakeManagedIdentity
from devtools.loopback import LoopbackServer

GRAPH_RESOURCE: Final = "https://graph.microsoft.com"
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
DELTA_PAGE_SIZE: Final = 200
LIST_MAX_PAGE: Final = 999
LIST_DEFAULT_PAGE: Final = 100

DEVICE_PROPERTIES: Final = (
    "id",
    "deviceId",
    "accountEnabled",
    "trustType",
    "alternativeSecurityIds",
)
_DEVICE_FILTER: Final = re.compile(r"deviceId eq '([0-9A-Fa-f-]{36})'")

Endpoint = Literal["delta", "list", "devices", "groups", "subscriptions", "any"]
_FAULT_CODES: Final = {429: "TooManyRequests", 410: "syncStateNotFound", 500: "generalException"}
UserState = Literal["live", "soft-deleted", "deleted"]


@dataclass(slots=True)
class _User:
    id: str
    props: dict[str, Any]
    ever_set: set[str]
    state: UserState = "live"
    seq: int = 0


@dataclass(slots=True)
class _Fault:
    endpoint: Endpoint
    kind: Literal["status", "reset", "slow"]
    times: int
    status: int = 0
    retry_after: int | None = None
    seconds: float = 0.0
    then: Callable[[], None] | None = None


@dataclass(slots=True)
class _Round:
    """A delta round or a /users listing in progress: a fixed list of ids and where we are."""

    ids: list[str]
    offset: int
    select: tuple[str, ...]
    upto_seq: int
    delta: bool
    size: int


@dataclass(slots=True)
class Stats:
    requests: Counter[str] = field(default_factory=Counter)
    faults_served: Counter[str] = field(default_factory=Counter)


def generated_user(label: str, index: int, domain: str) -> dict[str, Any]:
    """A deterministic user: two in three synced from AD, every 7th without mail."""
    nickname = f"user{index:06d}"
    synced = index % 3 != 0
    props: dict[str, Any] = {
        "displayName": f"{label} User {index:06d}",
        "userPrincipalName": f"{nickname}@{domain}",
        "mail": None if index % 7 == 0 else f"{nickname}@{domain}",
        "mailNickname": nickname,
        "onPremisesSecurityIdentifier": (
            f"S-1-5-21-1004336348-1177238915-682003330-{10000 + index}" if synced else None
        ),
        "onPremisesDomainName": "corp.contoso.com" if synced else None,
        "onPremisesSamAccountName": nickname if synced else None,
        "onPremisesDistinguishedName": (
            f"CN={nickname},OU=Users,DC=corp,DC=contoso,DC=com" if synced else None
        ),
        "accountEnabled": index % 11 != 0,
    }
    return props


class FakeGraph(GraphGroups, LoopbackServer):
    """Graph's `/v1.0/users` and `/v1.0/users/delta` over a directory held in memory."""

    def __init__(
        self,
        identity: FakeManagedIdentity,
        *,
        users: int = 0,
        label: str = "Test",
        domain: str = "contoso.example",
        seed: str = "",
        port: int = 0,
        delta_page_size: int = DELTA_PAGE_SIZE,
        group_page_size: int = GROUP_PAGE_SIZE,
        member_chunk: int = MEMBER_CHUNK,
        list_max_page: int = LIST_MAX_PAGE,
    ) -> None:
        """`list_max_page`: the most users a `/users` page holds whatever `$top` asks (Graph's
        999; fewer is OData's server-driven paging, which a client must follow as well)."""
        super().__init__(port)
        self.identity = identity
        self.domain = domain
        self.delta_page_size = delta_page_size
        self.list_max_page = list_max_page
        self.stats = Stats()
        self._lock = threading.Lock()
        self._users: dict[str, _User] = {}
        self._seq = 0
        self._rounds: dict[str, _Round] = {}
        self._delta_tokens: dict[str, int] = {}
        self._expired: set[str] = set()
        self._faults: list[_Fault] = []
        self._devices: dict[str, dict[str, Any]] = {}
        self._init_groups(group_page_size, member_chunk)
        self._namespace = uuid.uuid5(
            uuid.NAMESPACE_URL, f"fake-graph:{seed or secrets.token_hex()}"
        )
        for index in range(1, users + 1):
            self._create(
                str(uuid.uuid5(self._namespace, str(index))), generated_user(label, index, domain)
            )

    @property
    def graph_base_url(self) -> str:
        """What GRAPH_BASE_URL should be."""
        return self.base_url + "/v1.0"

    # -- the directory, as a test changes it ------------------------------------------------

    def add_user(self, **props: Any) -> str:
        user_id = str(uuid.uuid4())
        nickname = f"new{user_id[:8]}"
        base: dict[str, Any] = dict.fromkeys(USER_PROPERTIES)
        base |= {
            "displayName": f"New User {nickname}",
            "userPrincipalName": f"{nickname}@{self.domain}",
            "mailNickname": nickname,
            "accountEnabled": True,
        }
        with self._lock:
            self._create(user_id, base | props)
        return user_id

    def update_user(self, user_id: str, **props: Any) -> None:
        """Set properties; `None` clears one, as an admin blanking a field in Entra ID."""
        unknown = set(props) - set(USER_PROPERTIES)
        if unknown:
            raise KeyError(f"not a user property here: {sorted(unknown)}")
        with self._lock:
            user = self._users[user_id]
            user.props.update(props)
            user.ever_set.update(props)
            self._touch(user)

    def soft_delete(self, user_id: str) -> None:
        self._set_state(user_id, "soft-deleted")

    def hard_delete(self, user_id: str) -> None:
        self._set_state(user_id, "deleted")

    def restore(self, user_id: str) -> None:
        self._set_state(user_id, "live")

    def live_users(self) -> dict[str, dict[str, Any]]:
        """Every live user's properties (None = not set), by object id."""
        with self._lock:
            return {u.id: dict(u.props) for u in self._users.values() if u.state == "live"}

    def removed_ids(self) -> set[str]:
        with self._lock:
            return {u.id for u in self._users.values() if u.state != "live"}

    def user_ids(self, count: int | None = None) -> list[str]:
        with self._lock:
            ids = [u.id for u in self._users.values() if u.state == "live"]
        return ids[:count] if count is not None else ids

    def _create(self, user_id: str, props: Mapping[str, Any]) -> None:
        user = _User(
            user_id,
            {name: props.get(name) for name in USER_PROPERTIES},
            {name for name in USER_PROPERTIES if props.get(name) is not None},
        )
        self._users[user_id] = user
        self._touch(user)

    def _set_state(self, user_id: str, state: UserState) -> None:
        with self._lock:
            user = self._users[user_id]
            user.state = state
            self._touch(user)

    def _touch(self, user: _User) -> None:
        self._seq += 1
        user.seq = self._seq

    # -- devices, as a test registers and changes them ------------------------------------------

    def register_device(
        self,
        device_id: str,
        alternative_security_ids: list[dict[str, Any]],
        *,
        account_enabled: bool = True,
        trust_type: str = "AzureAd",
    ) -> str:
        """Register a device as joining does; its directory object id."""
        object_id = str(uuid.uuid4())
        with self._lock:
            self._devices[device_id.lower()] = {
                "id": object_id,
                "deviceId": device_id.lower(),
                "accountEnabled": account_enabled,
                "trustType": trust_type,
                "alternativeSecurityIds": [dict(entry) for entry in alternative_security_ids],
            }
        return object_id

    def update_device(self, device_id: str, **props: Any) -> None:
        """Change a device (`accountEnabled=False` disables it, `trustType=...`)."""
        unknown = set(props) - set(DEVICE_PROPERTIES)
        if unknown:
            raise KeyError(f"not a device property here: {sorted(unknown)}")
        with self._lock:
            self._devices[device_id.lower()].update(props)

    def disable_device(self, device_id: str) -> None:
        """As an admin disabling the device in Entra ID."""
        self.update_device(device_id, accountEnabled=False)

    # -- fault injection ----------------------------------------------------------------------

    def fail_next(
        self,
        status: int,
        *,
        retry_after: int | None = None,
        times: int = 1,
        on: Endpoint = "any",
        then: Callable[[], None] | None = None,
    ) -> None:
        """Answer the next `times` matching requests with `status` (and `Retry-After`); `then`
        changes the directory at that moment (e.g. a deletion racing a fallback)."""
        with self._lock:
            self._faults.append(_Fault(on, "status", times, status, retry_after, then=then))

    def reset_next(self, *, times: int = 1, on: Endpoint = "any") -> None:
        """Close the connection in the middle of the next matching response bodies."""
        with self._lock:
            self._faults.append(_Fault(on, "reset", times))

    def slow_next(self, seconds: float, *, times: int = 1, on: Endpoint = "any") -> None:
        with self._lock:
            self._faults.append(_Fault(on, "slow", times, seconds=seconds))

    def expire_delta_links(self) -> None:
        """Every delta link handed out so far now answers 410 syncStateNotFound."""
        with self._lock:
            self._expired.update(self._delta_tokens)

    def _take_fault(self, endpoint: Endpoint) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.times > 0 and fault.endpoint in ("any", endpoint):
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                    self.stats.faults_served[fault.kind] += 1
                    return fault
        return None

    # -- HTTP -----------------------------------------------------------------------------------

    def build_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1.0/users/delta", self._delta)
        app.router.add_get("/v1.0/users", self._list)
        self.add_group_routes(app)
        app.router.add_get("/v1.0/devices", self._devices_list)
        return app

    async def _devices_list(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "devices")

    async def _authorized(self, request: web.Request, endpoint: Endpoint) -> web.Response | None:
        """For the groups section: count, check the token, serve an injected status or delay."""
        self.stats.requests[endpoint] += 1
        auth = request.headers.get("Authorization", "")
        if not self.identity.is_valid(auth.removeprefix("Bearer "), GRAPH_RESOURCE):
            return _error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        fault = self._take_fault(endpoint)
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)  # the slow page itself, not synchronisation
        if fault is not None and fault.kind == "status":
            code = _FAULT_CODES.get(fault.status, "serviceNotAvailable")
            return _error(fault.status, code, "Injected fault.")
        return None

    @staticmethod
    def _graph_error(status: int, code: str, message: str) -> web.Response:
        return _error(status, code, message)

    async def _delta(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "delta")

    async def _list(self, request: web.Request) -> web.StreamResponse:
        return await self._serve(request, "list")

    async def _serve(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        self.stats.requests[endpoint] += 1
        auth = request.headers.get("Authorization", "")
        token = auth.removeprefix("Bearer ") if auth.startswith("Bearer ") else ""
        if not self.identity.is_valid(token, GRAPH_RESOURCE):
            return _error(401, "InvalidAuthenticationToken", "Access token is empty or invalid.")
        fault = self._take_fault(endpoint)
        if fault is not None and fault.then is not None:
            fault.then()
        if fault is not None and fault.kind == "status":
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            return _error(
                fault.status,
                _FAULT_CODES.get(fault.status, "serviceNotAvailable"),
                "Injected fault.",
                headers,
            )
        if fault is not None and fault.kind == "slow":
            await asyncio.sleep(fault.seconds)  # the slow page itself, not synchronisation
        try:
            body = self._page(request, endpoint)
        except _GraphError as error:
            return _error(error.status, error.code, error.message)
        if fault is not None and fault.kind == "reset":
            return await _reset_midway(request, body)
        return web.Response(body=body, content_type="application/json")

    def _page(self, request: web.Request, endpoint: Endpoint) -> bytes:
        if endpoint == "devices":
            return self._device_page(request)
        query = request.query
        select = _select(query.get("$select"))
        with self._lock:
            if "$skiptoken" in query:
                page_round = self._rounds.get(query["$skiptoken"])
                if page_round is None:
                    raise _GraphError(400, "BadRequest", "Unknown $skiptoken.")
            elif endpoint == "list":
                top = min(int(query.get("$top", LIST_DEFAULT_PAGE)), self.list_max_page)
                live = sorted(u.id for u in self._users.values() if u.state == "live")
                page_round = _Round(live, 0, select, self._seq, delta=False, size=top)
            else:
                page_round = self._start_delta(query.get("$deltatoken"), select)
            return self._emit(page_round, request)

    def _start_delta(self, token: str | None, select: tuple[str, ...]) -> _Round:
        if token == "latest":
            return _Round([], 0, select, self._seq, True, self.delta_page_size)
        if token is None:
            live = sorted(u.id for u in self._users.values() if u.state == "live")
            return _Round(live, 0, select, self._seq, True, self.delta_page_size)
        if token in self._expired:
            raise _GraphError(
                410,
                "syncStateNotFound",
                "The sync state generation is not found. Resync required.",
            )
        since = self._delta_tokens.get(token)
        if since is None:
            raise _GraphError(400, "BadRequest", "Unknown $deltatoken.")
        changed = sorted(
            (u for u in self._users.values() if u.seq > since), key=lambda u: (u.seq, u.id)
        )
        return _Round([u.id for u in changed], 0, select, self._seq, True, self.delta_page_size)

    def _emit(self, page_round: _Round, request: web.Request) -> bytes:
        end = page_round.offset + page_round.size
        chunk = page_round.ids[page_round.offset : end]
        rest = dataclasses.replace(page_round, offset=end)
        values = [item for item in (self._render(i, page_round) for i in chunk) if item]
        path = "/v1.0/users/delta" if page_round.delta else "/v1.0/users"
        base = f"http://{request.host}{path}"
        body: dict[str, Any] = {"@odata.context": f"{self.graph_base_url}/$metadata#users"}
        body["value"] = values
        if rest.offset < len(rest.ids):
            skip = secrets.token_urlsafe(18)
            self._rounds[skip] = rest
            body["@odata.nextLink"] = f"{base}?$skiptoken={skip}"
        elif page_round.delta:
            delta = secrets.token_urlsafe(18)
            self._delta_tokens[delta] = page_round.upto_seq
            body["@odata.deltaLink"] = f"{base}?$deltatoken={delta}"
        return json.dumps(body, separators=(",", ":")).encode()

    def _render(self, user_id: str, page_round: _Round) -> dict[str, Any] | None:
        user = self._users[user_id]
        if user.state != "live":
            if not page_round.delta:
                return None
            reason = "changed" if user.state == "soft-deleted" else "deleted"
            return {"id": user.id, "@removed": {"reason": reason}}
        names = page_round.select or USER_PROPERTIES
        if page_round.delta:
            names = tuple(n for n in names if n in user.ever_set)
        return {"id": user.id} | {n: user.props.get(n) for n in names if n != "id"}

    def _device_page(self, request: web.Request) -> bytes:
        """Only the filter device proofs use: one deviceId, as Graph answers it (0 or 1 item)."""
        match = _DEVICE_FILTER.fullmatch(request.query.get("$filter", ""))
        if match is None:
            raise _GraphError(400, "Request_UnsupportedQuery", "Unsupported $filter.")
        wanted = request.query.get("$select")
        names = [n for n in wanted.split(",") if n in DEVICE_PROPERTIES] if wanted else None
        with self._lock:
            device = self._devices.get(match[1].lower())
            values = [] if device is None else [json.loads(json.dumps(device))]
        if names is not None:
            values = [{n: item[n] for n in names} for item in values]
        body = {"@odata.context": f"{self.graph_base_url}/$metadata#devices", "value": values}
        return json.dumps(body, separators=(",", ":")).encode()


class _GraphError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _select(value: str | None) -> tuple[str, ...]:
    if not value:
        return ()
    return tuple(name for name in value.split(",") if name in USER_PROPERTIES)


def _error(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"request-id": str(uuid.uuid4()), "client-request-id": str(uuid.uuid4())},
        }
    }
    return web.json_response(body, status=status, headers=dict(headers or {}))


async def _reset_midway(request: web.Request, body: bytes) -> web.StreamResponse:
    """Send the headers and half the body, then drop the TCP connection."""
    response = web.StreamResponse(headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.abort()
    return response


def expected_rows(live: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """What AadUsers should hold for live users: the set properties, isDeleted false."""
    return {
        user_id: {k: v for k, v in props.items() if v is not None} | {"isDeleted": False}
        for user_id, props in live.items()
    }
