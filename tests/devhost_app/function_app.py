"""A test-only function app with every trigger kind the development host runs.

Queue and table names come from app settings (`%SETTING%`), so each test gets its own.
Effects are rows in `%RECORD_TABLE%` (PartitionKey = what happened) and queue messages.
"""

from __future__ import annotations

import asyncio
import json
import os
import uuid

import azure.functions as func

from shared.storage import get_storage

app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


async def record(kind: str, **fields: object) -> None:
    table = await get_storage().table(os.environ["RECORD_TABLE"])
    entity = {"PartitionKey": kind, "RowKey": str(uuid.uuid4()), **fields}
    await table.create_entity(entity)


@app.function_name("echo")
@app.route(route="echo/{name}/{tail?}", methods=["GET", "POST"])
async def echo(req: func.HttpRequest) -> func.HttpResponse:
    body = {
        "method": req.method,
        "url": req.url,
        "routeParams": dict(req.route_params),
        "query": dict(req.params),
        "headers": {k.lower(): v for k, v in req.headers.items()},
        "body": req.get_body().decode("utf-8", errors="replace"),
    }
    return func.HttpResponse(
        json.dumps(body), status_code=201, mimetype="application/json", headers={"X-Echo": "1"}
    )


@app.function_name("crash")
@app.route(route="crash", methods=["GET"])
async def crash(req: func.HttpRequest) -> func.HttpResponse:
    raise RuntimeError("boom")


@app.function_name("tick")
@app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="timer")
async def tick(timer: func.TimerRequest) -> None:
    await record("tick", pastDue=timer.past_due)


_overrun_calls = 0


@app.function_name("overrun")
@app.timer_trigger(schedule="%OVERRUN_SCHEDULE%", arg_name="timer")
async def overrun(timer: func.TimerRequest) -> None:
    """Its first run outlasts the next tick, so that tick starts late (past due)."""
    global _overrun_calls
    _overrun_calls += 1
    await record("overrun", call=_overrun_calls, pastDue=timer.past_due)
    if _overrun_calls == 1:
        await asyncio.sleep(2.5)


@app.function_name("relay")
@app.queue_trigger(arg_name="msg", queue_name="%RELAY_IN_QUEUE%", connection="AzureWebJobsStorage")
@app.queue_output(arg_name="out", queue_name="%RELAY_OUT_QUEUE%", connection="AzureWebJobsStorage")
async def relay(msg: func.QueueMessage, out: func.Out[list[str]]) -> None:
    """Each message becomes one or several messages on the output queue."""
    text = msg.get_body().decode("utf-8")
    out.set([f"{part}|{msg.dequeue_count}" for part in text.split(",")])


@app.function_name("doomed")
@app.queue_trigger(arg_name="msg", queue_name="%DOOMED_QUEUE%", connection="AzureWebJobsStorage")
async def doomed(msg: func.QueueMessage) -> None:
    await record("doomed", attempt=msg.dequeue_count, messageId=msg.id)
    raise RuntimeError("this message can never be processed")


@app.function_name("slow")
@app.queue_trigger(arg_name="msg", queue_name="%SLOW_QUEUE%", connection="AzureWebJobsStorage")
async def slow(msg: func.QueueMessage) -> None:
    """Hangs on its first delivery (the test stops the host meanwhile); done on the next."""
    await record("slow-started", attempt=msg.dequeue_count, pid=os.getpid())
    if msg.dequeue_count == 1:
        await asyncio.sleep(3600)
    await record("slow-done", attempt=msg.dequeue_count, pid=os.getpid())


@app.function_name("grid")
@app.event_grid_trigger(arg_name="event")
async def grid(event: func.EventGridEvent) -> None:
    if event.get_json() == {"fail": True}:
        raise RuntimeError("this event can never be handled")
    await record("grid", eventId=event.id, subject=event.subject, data=json.dumps(event.get_json()))
