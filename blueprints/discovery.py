"""The discovery capability's triggers. Thin adapters over `shared.discovery`.

- `discovery_full` / `discovery_delta`: timers on `%DISCOVERY_FULL_SCHEDULE%` /
  `%DISCOVERY_DELTA_SCHEDULE%`, for every discovered resource (users; groups unless
  DISCOVERY_GROUPS is none).
- `discovery_events`: Event Grid; Graph change notifications (partner events) whose
  clientState is the subscription's ask for a delta of their resource, lifecycle events renew or
  recreate the subscription, `CMBootstrap.DiscoveryRequested` `{"mode", "resource"?}` asks for
  that mode (through the `discovery-continue` queue); other types are ignored.
- `discovery_continue`: queue `discovery-continue`: resumes a run that spent its time budget, or
  starts the run an event (or the pending requests) asked for; a `{"tenant", "job"}` message
  runs (or continues) that background job (`shared.jobs`): `profiles`, the resolved install
  profiles' rebuild; `overview`, the fleet overview's summarization pass.
- `graph_subscriptions`: timer on `%GRAPH_SUBSCRIPTION_SCHEDULE%`: creates and renews the Graph
  subscriptions.
- `discovery_runs`: `GET /api/discovery/runs?pageSize=&next=`, admin only, newest first.
- `groups`: `GET /api/groups?pageSize=&next=`, admin only: the discovered groups.
"""

import asyncio
import logging

import azure.functions as func

from shared.auth import authenticate, require_admin
from shared.discovery import (
    Continuation,
    DiscoveryConfig,
    EventDecision,
    MalformedContinuation,
    MalformedEvent,
    Mode,
    SubscriptionConfig,
    check_client_state,
    decide,
    handle_lifecycle,
    list_groups,
    list_runs,
    maintain_subscriptions,
    parse_continuation,
    parse_groups_query,
    parse_runs_query,
    run_discovery,
    send_continuation,
)
from shared.http import json_response, problem_boundary
from shared.jobs import Job, send_job
from shared.names import DISCOVERY_CONTINUE_QUEUE
from shared.profiles import run_rebuild_job
from shared.reports import run_overview_pass, stuck_threshold
from shared.settings import get_settings

bp = func.Blueprint()
_log = logging.getLogger(__name__)


async def _run(mode: Mode, trigger: str) -> None:
    # Side by side: each resource has its own lease and time budget, so the invocation lasts
    # one budget, not one per resource.
    config = DiscoveryConfig.from_settings(get_settings())
    results = await asyncio.gather(
        *(run_discovery(mode, trigger, config, resource=r) for r in config.resources)
    )
    for resource, result in zip(config.resources, results, strict=True):
        _log.info(
            "discovery invocation ended: %s",
            result.status,
            extra={"tenantId": config.tenant_id, "resource": resource, "runId": result.run_id},
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
    settings = get_settings()
    tenant_id = settings.tenant_id
    enabled = DiscoveryConfig.from_settings(settings).resources
    try:
        decision = decide(_event_type(event), event.get_json(), tenant_id, enabled)
    except MalformedEvent as error:
        # Redelivery would not fix it: log why and let Event Grid consider it delivered.
        _log.warning("malformed Event Grid event ignored: %s", error, extra=ids)
        return
    if decision.graph and not await _from_our_subscription(decision, tenant_id, ids):
        return
    if decision.mode is None:
        _log.info("Event Grid event ignored: %s", decision.reason, extra=ids)
        return
    # Queued, not run here: Event Grid redelivers what is not acknowledged within 30 seconds.
    for resource in decision.resources:
        message = Continuation(tenant_id, decision.mode, trigger="eventgrid", resource=resource)
        await send_continuation(message)
    _log.info("Event Grid event queued a discovery run: %s", decision.reason, extra=ids)


async def _from_our_subscription(
    decision: EventDecision, tenant_id: str, ids: dict[str, str]
) -> bool:
    """A Graph notification counts only with its subscription's clientState; a lifecycle event
    is acted on here (renew or recreate), and queues a delta when one is needed."""
    resource = await check_client_state(tenant_id, decision.subscription_id, decision.client_state)
    if resource is None:
        # The value itself is never logged: it is the subscription's secret or a guess at it.
        _log.warning("Graph notification ignored: clientState does not match", extra=ids)
        return False
    if decision.lifecycle is None:
        return True
    config = SubscriptionConfig.from_settings(get_settings())
    if await handle_lifecycle(config, resource, decision.lifecycle):
        message = Continuation(tenant_id, "delta", trigger="eventgrid", resource=resource)
        await send_continuation(message)
    _log.info("Graph lifecycle event %s handled for %s", decision.lifecycle, resource, extra=ids)
    return False


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
    if isinstance(continuation, Job):
        await _run_job(continuation, config, msg.id)
        return
    result = await run_discovery(
        continuation.mode,
        continuation.trigger,
        config,
        resource=continuation.resource,
        resume_run_id=continuation.run_id,
    )
    _log.info(
        "discovery continuation ended: %s",
        result.status,
        extra={
            "tenantId": config.tenant_id,
            "resource": continuation.resource,
            "runId": continuation.run_id,
            "messageId": msg.id,
        },
    )


async def _run_job(job: Job, config: DiscoveryConfig, message_id: str | None) -> None:
    """A background job by its name; each checkpoints and queues its own continuation."""
    status: str
    if job.job == "profiles":
        status = await run_rebuild_job(
            job.tenant_id,
            budget_seconds=config.time_budget_seconds,
            lease_seconds=config.lease_seconds,
        )
    else:
        result = await run_overview_pass(
            job.tenant_id, request_pass=lambda: send_job(job), stuck_after=stuck_threshold()
        )
        status = f"{result.status}, {result.devices} devices"
    _log.info(
        "%s job ended: %s",
        job.job,
        status,
        extra={"tenantId": job.tenant_id, "messageId": message_id},
    )


@bp.function_name("graph_subscriptions")
@bp.timer_trigger(arg_name="timer", schedule="%GRAPH_SUBSCRIPTION_SCHEDULE%", run_on_startup=False)
async def graph_subscriptions(timer: func.TimerRequest) -> None:
    config = SubscriptionConfig.from_settings(get_settings())
    done = await maintain_subscriptions(config)
    _log.info("Graph subscriptions maintained: %s", done, extra={"tenantId": config.tenant_id})


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


@bp.function_name("groups")
@bp.route(route="groups", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def groups(req: func.HttpRequest) -> func.HttpResponse:
    caller = await authenticate(req)
    require_admin(caller)
    size, after = parse_groups_query(req.params.get("pageSize"), req.params.get("next"))
    page = await list_groups(get_settings().tenant_id, size=size, after=after)
    return json_response({"groups": page.groups, "next": page.continuation})
