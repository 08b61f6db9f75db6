"""Install profiles (function `profiles`), admin only: thin adapters over `shared.profiles`.

- `PUT /api/profiles/{name}`: create or replace; 400 names every bad field; 415 for a
  Content-Encoding. The answer's `upToDate` says whether resolution has caught up (the rebuild
  runs as a queued job; `GET /api/profiles/resolve` shows when it has).
- `GET /api/profiles/{name}`, `DELETE /api/profiles/{name}`.
- `GET /api/profiles?pageSize=&next=`: by name.
- `GET /api/profiles/resolve?deviceId=&userId=`: which profile applies and why; issues nothing.
"""

import json

import azure.functions as func

from shared.auth import Caller, authenticate, lookup_device, require_admin
from shared.errors import BadRequest, NotFound
from shared.http import json_response, problem_boundary, require_plain_body
from shared.profiles import (
    check_name,
    delete_profile,
    explain,
    get_profile,
    list_profiles,
    parse_profile,
    parse_profiles_query,
    parse_resolve_query,
    rebuild_state,
    save_profile,
)
from shared.settings import get_settings

bp = func.Blueprint()

MAX_BODY_BYTES = 16 * 1024  # a profile is a few hundred bytes


async def _admin(req: func.HttpRequest) -> Caller:
    caller = await authenticate(req)
    require_admin(caller)
    return caller


@bp.function_name("profiles")
@bp.route(
    route="profiles/{name?}",
    methods=["GET", "PUT", "DELETE"],
    auth_level=func.AuthLevel.ANONYMOUS,
)
@problem_boundary
async def profiles(req: func.HttpRequest) -> func.HttpResponse:
    caller = await _admin(req)
    tenant_id = get_settings().tenant_id
    name = req.route_params.get("name")
    if not name:
        if req.method != "GET":
            raise NotFound("Use /api/profiles/{name} to change a profile.")
        size, after = parse_profiles_query(req.params.get("pageSize"), req.params.get("next"))
        page = await list_profiles(tenant_id, size=size, after=after)
        return json_response({"profiles": [p.as_json() for p in page.profiles], "next": page.next})
    if name == "resolve" and req.method == "GET":
        return json_response(await _resolve(req, tenant_id))
    name = check_name(name)
    if req.method == "PUT":
        require_plain_body(req)
        profile = parse_profile(name, _json_body(req.get_body()))
        stored = await save_profile(tenant_id, profile, updated_by=caller.object_id)
        # The rebuild is queued: false until it has run (the resolve answer shows when).
        state = await rebuild_state(tenant_id)
        return json_response(stored.as_json() | {"upToDate": state.up_to_date})
    if req.method == "DELETE":
        if not await delete_profile(tenant_id, name):
            raise NotFound(f"No install profile named '{name}'.")
        return func.HttpResponse(status_code=204, headers={"Cache-Control": "no-store"})
    found = await get_profile(tenant_id, name)
    if found is None:
        raise NotFound(f"No install profile named '{name}'.")
    return json_response(found.as_json())


def _json_body(body: bytes) -> object:
    if len(body) > MAX_BODY_BYTES:
        raise BadRequest("The body is too large.", errors={"body": "at most 16 KiB"})
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("The body is not JSON.", errors={"body": "a JSON object"}) from None


async def _resolve(req: func.HttpRequest, tenant_id: str) -> dict[str, object]:
    device_id, user_id = parse_resolve_query(req.params.get("deviceId"), req.params.get("userId"))
    # An admin question, not a bundle: asking Graph for the device's object id is fine here.
    device = await lookup_device(device_id) if device_id else None
    answer = await explain(
        tenant_id, device_object_id=device.object_id if device else None, user_id=user_id
    )
    return {
        "deviceId": device_id,
        "deviceObjectId": device.object_id if device else None,
        "userId": user_id,
        **answer,
    }
