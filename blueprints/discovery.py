"""The discovery capability's triggers (issue 3). Thin adapters over `shared.discovery`.

- `discovery_full` / `discovery_delta`: timers on `%DISCOVERY_FULL_SCHEDULE%` /
  `%DISCOVERY_DELTA_SCHEDULE%`.
- `discovery_events`: Event Grid; Graph user change notifications (partner events) ask for a
  delta run, `CMBootstrap.DiscoveryRequested` `{"mode": ...}` for that mode (through the
  `discovery-continue` queue); other types are ignored.
- `discovery_continue`: queue `discovery-continue`: resumes a run that spent its time budget, or
  starts the run an event asked for.
- `discovery_runs`: `GET /api/discovery/runs?pageSize=&next=`, admin only, newest first.
"""

import logging

import azure.functions as func

from shared.auth import authenticate, require_admin
from shared.discovery import (
    Continuation,
    DiscoveryConfig,
    MalformedContinuation,
    MalformedEvent,
    Mode,
    decide,
    list_runs,
    parse_continuation,
    parse_runs_query,
    run_discovery,
    send_continuation,
)
from shared.http import json_response, problem_boundary
from shared.names import DISCOVERY_CONTINUE_QUEUE
from shared.settings import get_settings

bp = func.Blueprint()
_log = logging.getLogger(__name__)


async def _run(mode: Mode, trigger: str) -> None:
    config = DiscoveryConfig.from_settings(get_settings())
    result = await run_discovery(mode, trigger, config)
    _log.info(
        "discovery invocation ended: %s",
        result.status,
        extra={"tenantId": config.tenant_id, "runId": result.run_id},
    )


@bp.function_name("discovery_full")
@bp.timer_trigger(arg_name="timer", schedule="%DISCOVERY_FULL_SCHEDULE%", run_on_startup=False)
async def discovery_full(timer: func.TimerRequest) -> None:
    await _run("full", "timer")


@bp.function_name("discovery_delta")
@bp.timer_trigger(arg_name="timer", schedule="%DISCOVERY_DELTA_SCHEDULE%", run_on_startup=False)
async def discovery_delta(timer: func.TimerRequest) -> None:
    await _run("delta", "timer")


@bp.function_name("discovery_events")
@bp.event_grid_trigger(arg_name="event")
async def discovery_events(event: func.EventGridEvent) -> None:
    # The worker hands over a CloudEvent for CloudEvents 1.0 deliveries (Graph partner events).
    ids = {"messageId": event.id}
    tenant_id = get_settings().tenant_id
    try:
        decision = decide(_event_type(event), event.get_json(), tenant_id)
    except MalformedEvent as error:
        # Redelivery would not fix it: log why and let Event Grid consider it delivered.
        _log.warning("malformed Event Grid event ignored: %s", error, extra=ids)
        return
    if decision.mode is None:
        _log.info("Event Grid event ignored: %s", decision.reason, extra=ids)
        return
    # Queued, not run here: Event Grid redelivers what is not acknowledged within 30 seconds.
    await send_continuation(Continuation(tenant_id, decision.mode, trigger="eventgrid"))
    _log.info("Event Grid event queued a discovery run: %s", decision.reason, extra=ids)


def _event_type(event: func.EventGridEvent | func.CloudEvent) -> str:
    return event.type if isinstance(event, func.CloudEvent) else event.event_type


@bp.function_name("discovery_continue")
@bp.queue_trigger(
    arg_name="msg", queue_name=DISCOVERY_CONTINUE_QUEUE, connection="AzureWebJobsStorage"
)
async def discovery_continue(msg: func.QueueMessage) -> None:
    try:
        continuation = parse_continuation(msg.get_body().decode("utf-8", errors="replace"))
    except MalformedContinuation as error:
        # Raising sends it to discovery-continue-poison after maxDequeueCount: kept, not lost.
        _log.error("malformed continuation message: %s", error, extra={"messageId": msg.id})
        raise
    config = DiscoveryConfig.from_settings(get_settings())
    if continuation.tenant_id != config.tenant_id:
        _log.warning("continuation for another tenant ignored", extra={"messageId": msg.id})
        return
    result = await run_discovery(
        continuation.mode, continuation.trigger, config, resume_run_id=continuation.run_id
    )
    _log.info(
        "discovery continuation ended: %s",
        result.status,
        extra={"tenantId": config.tenant_id, "runId": continuation.run_id, "messageId": msg.id},
    )


@bp.function_name("discovery_runs")
@bp.route(route="discovery/runs", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def discovery_runs(req: func.HttpRequest) -> func.HttpResponse:
    caller = await authenticate(req)
    require_admin(caller)
    # One paging scheme: `next`; `continuation` is its older, still documented name.
    paging_param = "next" if req.params.get("next") else "continuation"
    size, after = parse_runs_query(
        req.params.get("pageSize"), req.params.get(paging_param), paging_param=paging_param
    )
    # Runs are recorded under the configured tenant, which `authenticate` matched to `tid`.
    page = await list_runs(get_settings().tenant_id, size=size, after=after)
    return json_response(
        {"runs": page.runs, "next": page.continuation, "continuation": page.continuation}
    )
