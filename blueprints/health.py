"""`GET /api/health`: storage reachable, settings valid, last discovery run."""

import azure.functions as func

from shared.errors import ServiceUnavailable
from shared.health import check_health
from shared.http import json_response, problem_boundary, problem_response

bp = func.Blueprint()


@bp.function_name("health")
@bp.route(route="health", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def health(req: func.HttpRequest) -> func.HttpResponse:
    report = await check_health()
    if report.healthy:
        return json_response(report.as_dict())
    if not report.storage_reachable:
        reason = "storage is not reachable"
    elif not report.settings_valid:
        reason = "settings are invalid"
    else:
        reason = "a Graph subscription expires within 24 hours without a renewal"
    problem = ServiceUnavailable(f"Unhealthy: {reason}.", retry_after_seconds=10)
    problem.extensions.update(report.as_dict())
    return problem_response(problem)
