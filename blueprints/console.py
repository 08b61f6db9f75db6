"""The admin console and the API's description: thin adapters over `shared.console` and
`shared.openapi`.

- `console`: `GET /api/console` (the page) and `GET /api/console/{file}` (its scripts, styles,
  MSAL.js and `config.json`), anonymous: the page signs the admin in and calls the admin views
  with the admin's token.
- `openapi`: `GET /api/openapi.json`, the OpenAPI 3.1 document of every endpoint.
"""

import azure.functions as func

from shared.console import console_config, console_file, security_headers
from shared.http import json_response, problem_boundary
from shared.openapi import openapi_document
from shared.settings import get_settings

bp = func.Blueprint()


@bp.function_name("console")
@bp.route(route="console/{file?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def console(req: func.HttpRequest) -> func.HttpResponse:
    settings = get_settings()
    headers = security_headers(settings)
    name = req.route_params.get("file")
    if name == "config.json":
        return json_response(console_config(settings), headers=headers)
    served = console_file(name)
    return func.HttpResponse(
        served.body, status_code=200, headers={**headers, "Content-Type": served.content_type}
    )


@bp.function_name("openapi")
@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(openapi_document(), headers={"Cache-Control": "public, max-age=300"})
