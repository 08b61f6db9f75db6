"""`GET /api/bundle` and `GET /api/jwks`: thin adapters over `shared.auth` and `shared.bundles`."""

import os

import azure.functions as func

from shared.auth import authenticate_device
from shared.bundles import (
    BundleRequest,
    bundle_issuer,
    client_ip,
    get_signing_keys,
    issue_bundle,
)
from shared.http import json_response, problem_boundary

bp = func.Blueprint()

JOSE: str = "application/jose"


@bp.function_name("bundle")
@bp.route(route="bundle", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def bundle(req: func.HttpRequest) -> func.HttpResponse:
    request = BundleRequest.from_params(req.params)
    caller = await authenticate_device(req, device_id=request.device_id, nonce=request.nonce)
    issued = await issue_bundle(
        caller,
        request,
        issuer=bundle_issuer(req.url, os.environ.get("WEBSITE_HOSTNAME")),
        ip=client_ip(req.headers.get("X-Forwarded-For")),
    )
    return func.HttpResponse(
        issued.jws, status_code=200, mimetype=JOSE, headers={"Cache-Control": "no-store"}
    )


@bp.function_name("jwks")
@bp.route(route="jwks", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def jwks(req: func.HttpRequest) -> func.HttpResponse:
    keys = await get_signing_keys()
    # Short caching: devices and proxies pick up a rotation's next key within minutes.
    return json_response(keys.jwks(), headers={"Cache-Control": "public, max-age=300"})
