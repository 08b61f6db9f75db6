"""The reports capability's triggers. Thin adapters over `shared.reports`.

- `reports`: `POST /api/reports`, a device's status report, enqueued on `device-status`.
- `record_status`: queue trigger on `device-status`, records each report exactly once in effect.
- `devices`: `GET /api/devices/{deviceId}`, `GET /api/devices?stage=&diagnosis=&next=` and
  `?summary=stage|overview`, admin only. The overview is a snapshot (one point read); a stale
  one asks for a summarization pass on `discovery-continue` (`{"tenant", "job": "overview"}`,
  run by `discovery_continue`).
"""

import azure.functions as func

from shared.auth import authenticate, authenticate_device, require_admin
from shared.errors import BadRequest, NotFound
from shared.http import json_response, problem_boundary, require_plain_body
from shared.ids import parse_guid
from shared.jobs import Job, send_job
from shared.names import DEVICE_STATUS_QUEUE
from shared.reports import (
    DeviceFilter,
    accept_report,
    check_size,
    device_detail,
    fleet_overview,
    list_devices,
    parse_page_size,
    record_message,
)

bp = func.Blueprint()


@bp.function_name("reports")
@bp.route(route="reports", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def reports(req: func.HttpRequest) -> func.HttpResponse:
    body = req.get_body()
    # 413 before the token or proof check costs a signature verification or a key fetch.
    check_size(req.headers.get("Content-Length"), body)
    require_plain_body(req)
    caller = await authenticate_device(req, body=body)
    report = await accept_report(body, caller=caller)
    return json_response({"reportId": report.report_id}, status=202)


@bp.function_name("record_status")
@bp.queue_trigger(arg_name="msg", queue_name=DEVICE_STATUS_QUEUE, connection="AzureWebJobsStorage")
async def record_status(msg: func.QueueMessage) -> None:
    await record_message(
        msg.get_body(),
        message_id=msg.id,
        dequeue_count=msg.dequeue_count,
        queue=DEVICE_STATUS_QUEUE,
    )


@bp.function_name("devices")
@bp.route(route="devices/{deviceId?}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@problem_boundary
async def devices(req: func.HttpRequest) -> func.HttpResponse:
    caller = await authenticate(req)
    require_admin(caller)
    tenant_id = caller.tenant_id.lower()
    device_id = req.route_params.get("deviceId")
    if device_id:
        detail = await device_detail(tenant_id, _device_guid(device_id))
        if detail is None:
            raise NotFound("No report has been recorded for this device.")
        return json_response(detail)
    summary = req.params.get("summary")
    if summary is not None:
        return json_response(await _summary(tenant_id, summary))
    where = DeviceFilter.from_params(req.params)
    page_size = parse_page_size(req.params.get("pageSize"))
    # One paging scheme: `next`; `continuation` is its older, still documented name.
    paging_param = "next" if req.params.get("next") else "continuation"
    page = await list_devices(
        tenant_id,
        where,
        page_size=page_size,
        continuation=req.params.get(paging_param),
        paging_param=paging_param,
    )
    return json_response(
        {"devices": page.devices, "next": page.continuation, "continuation": page.continuation}
    )


async def _summary(tenant_id: str, summary: str) -> dict[str, object]:
    if summary not in ("stage", "overview"):
        raise BadRequest("Unknown summary.", errors={"summary": "must be 'stage' or 'overview'"})
    overview = await fleet_overview(
        tenant_id,
        request_pass=lambda: send_job(Job(tenant_id, "overview")),
    )
    if summary == "stage":  # the older, smaller view of the same snapshot
        return {key: overview[key] for key in ("counts", "total", "asOf", "refreshing")}
    return overview


def _device_guid(value: str) -> str:
    device_id = parse_guid(value)
    if device_id is None:
        raise BadRequest("Bad device id.", errors={"deviceId": "must be a GUID"})
    return device_id
