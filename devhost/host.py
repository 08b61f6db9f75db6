"""The development host: HTTP front end, timers and queue listeners around one function app."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from aiohttp import web
from azure.functions import meta

from devhost.app_index import (
    EVENT_GRID_TRIGGER,
    HTTP_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    FunctionSpec,
    connection_setting,
    load_app,
)
from devhost.config import HostConfigError, HostOptions
from devhost.eventgrid import EventGridWebhook, event_datum
from devhost.http import HttpFrontEnd
from devhost.invoke import InvocationError, Invoker
from devhost.queues import QueueListener, admin_message
from devhost.storage_clients import QueueClients
from devhost.timers import TimerSchedule, timer_datum

log = logging.getLogger(__name__)
SHUTDOWN_GRACE_SECONDS: Final = 10.0
# Tests shorten the grace period; operators have no reason to.
GRACE_VARIABLE: Final = "DEVHOST_SHUTDOWN_GRACE_SECONDS"


class DevHost:
    """Built from the script root and the environment; `serve()` runs until `stop` is set."""

    def __init__(self, script_root: Path, environ: Mapping[str, str], *, host: str, port: int):
        self.options = HostOptions.load(script_root)
        self.host = host
        self.port = port
        loaded = load_app(script_root, environ)
        specs = loaded.functions
        self._app_shutdown = loaded.shutdown
        self.specs = {spec.name: spec for spec in specs}
        self.clients = QueueClients(environ)
        for spec in specs:
            for binding in (spec.trigger, *spec.outputs):
                if binding["type"] in (QUEUE_TRIGGER, "queue"):
                    self.clients.check(connection_setting(binding))
        self.invoker = Invoker(self.clients, queue_base64=self.options.queues.base64)
        self.timers = [
            TimerSchedule(spec, self.invoker)
            for spec in specs
            if spec.trigger_type == TIMER_TRIGGER
        ]
        self.listeners = [
            QueueListener(spec, self.invoker, self.clients, self.options.queues)
            for spec in specs
            if spec.trigger_type == QUEUE_TRIGGER
        ]
        self.eventgrid = EventGridWebhook(self.specs, self.invoker)
        self.front_end = HttpFrontEnd(
            self.specs, self.invoker, self, self.eventgrid, route_prefix=self.options.route_prefix
        )
        self.grace_seconds = float(environ.get(GRACE_VARIABLE) or SHUTDOWN_GRACE_SECONDS)
        self._state = "Initialized"
        self._background: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def state(self) -> str:
        return self._state

    def run_now(self, spec: FunctionSpec, payload: str) -> None:
        """The admin endpoint: run a non-HTTP function once, in the background."""
        task = asyncio.create_task(self._run_now(spec, payload))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _run_now(self, spec: FunctionSpec, payload: str) -> None:
        metadata: dict[str, meta.Datum] = {}
        if spec.trigger_type == TIMER_TRIGGER:
            data = timer_datum(past_due=False)
        elif spec.trigger_type == QUEUE_TRIGGER:
            data, metadata = admin_message(payload)
        else:
            data = event_datum(_json_object(payload))
        with contextlib.suppress(InvocationError):  # logged by the invoker
            await self.invoker.invoke(spec, data, metadata)

    def listing(self) -> list[str]:
        """What `func start` prints: each function, its trigger and where to call it."""
        lines = ["Functions:", ""]
        for spec in self.specs.values():
            if spec.trigger_type == HTTP_TRIGGER:
                methods = spec.trigger.get("methods") or ["GET", "POST", "PUT", "DELETE"]
                url = self.front_end.url(self.base_url, spec)
                lines.append(f"        {spec.name}: [{','.join(methods)}] {url}")
            elif spec.trigger_type == EVENT_GRID_TRIGGER:
                url = f"{self.base_url}/runtime/webhooks/eventgrid?functionName={spec.name}"
                lines.append(f"        {spec.name}: eventGridTrigger {url}")
            elif spec.trigger_type == TIMER_TRIGGER:
                schedule = spec.trigger.get("schedule")
                lines.append(f"        {spec.name}: timerTrigger ({schedule})")
            else:
                lines.append(f"        {spec.name}: queueTrigger ({spec.trigger['queueName']})")
            lines.append("")
        return lines

    async def serve(self, stop: asyncio.Event) -> None:
        runner = web.ServerRunner(self.front_end.server(), shutdown_timeout=self.grace_seconds)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self.port).start()
        except OSError as error:
            await runner.cleanup()
            raise HostConfigError(f"cannot listen on {self.host}:{self.port}: {error}") from None
        polling = asyncio.Event()
        timers = [asyncio.create_task(t.run(polling)) for t in self.timers]
        pollers = [asyncio.create_task(q.run(polling)) for q in self.listeners]
        print("\n".join(self.listing()), flush=True)
        self._state = "Running"
        log.info("Host started on %s", self.base_url)
        await stop.wait()
        self._state = "Stopping"
        log.info("Host stopping: in-flight invocations get %ss", self.grace_seconds)
        polling.set()
        for poller in pollers:  # a fetch in progress (maybe retrying) is not worth waiting for
            poller.cancel()
        await asyncio.gather(*pollers, return_exceptions=True)
        deadline = asyncio.get_running_loop().time() + self.grace_seconds
        await asyncio.gather(
            runner.cleanup(),
            self._finish(timers, deadline),
            *(listener.drain(deadline) for listener in self.listeners),
        )
        await self.clients.close()
        await self._shut_app_down()
        log.info("Host stopped")

    async def _shut_app_down(self) -> None:
        """The app's `shutdown` hook; a failure there is logged, the host still stops."""
        if self._app_shutdown is None:
            return
        try:
            await self._app_shutdown()
        except Exception:
            log.exception("the app's shutdown hook failed")

    async def _finish(self, tasks: list[asyncio.Task[None]], deadline: float) -> None:
        """Timer runs and admin runs get the grace period, then are cancelled."""
        pending = {*tasks, *self._background}
        if not pending:
            return
        timeout = max(0.0, deadline - asyncio.get_running_loop().time())
        _, unfinished = await asyncio.wait(pending, timeout=timeout)
        for task in unfinished:
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished, timeout=5)


def _json_object(payload: str) -> dict[str, object]:
    try:
        value = json.loads(payload) if payload else {}
    except (ValueError, RecursionError):
        return {"data": payload}
    return value if isinstance(value, dict) else {"data": value}
