"""`GET /api/health`: the status for anyone; storage, settings and last-run details for an admin.

No Authorization header: the anonymous answer. A header that is not a valid token: 401, as on
every endpoint. A valid token of a signed-in admin (delegated, `ADMIN_ROLE`): the details. Any
other valid token: the anonymous answer. While the settings are invalid no token can be
checked, so everyone gets the anonymous answer; the log names the setting.
"""

import azure.functions as func

from shared.auth import authenticate, is_admin
from shared.errors import ServiceUnavailable, SettingError
from shared.health import HealthReport, check_health
from shared.http import json_response, problem_boundary, problem_response

bp = func.Blueprint()
_RETRY_AFTER_SECONDS = 10


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def health(req: func.HttpRequest) -> func.HttpResponse:
    admin = await _is_admin_caller(req)
    report = await check_health()
    return _admin_answer(report) if admin else _public_answer(report)


async def _is_admin_caller(req: func.HttpRequest) -> bool:
    if not req.headers.get("Authorization"):
        return False
    try:
        caller = await authenticate(req)  # 401 for a token that is not valid
    except SettingError:
        return False
    return is_admin(caller)


def _public_answer(report: HealthReport) -> func.HttpResponse:
    if report.healthy:
        return json_response(report.public_body())
    return problem_response(
        ServiceUnavailable(
            "The service is not healthy; the reason is logged.",
            retry_after_seconds=_RETRY_AFTER_SECONDS,
        )
    )


def _admin_answer(report: HealthReport) -> func.HttpResponse:
    if report.healthy:
        return json_response(report.admin_body())
    problem = ServiceUnavailable(
        f"Unhealthy: {report.reason}.", retry_after_seconds=_RETRY_AFTER_SECONDS
    )
    problem.extensions.update(report.admin_body())
    return problem_response(problem)
