"""Timer triggers: six-field NCRONTAB schedules (seconds first), in UTC as Azure runs them.

A timer never overlaps itself. When a tick is started more than `PAST_DUE_AFTER` behind its
scheduled time (the host was busy, or the previous run overran), the function gets
`past_due=True`, and ticks missed meanwhile are skipped, as the Functions host does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from datetime import UTC, datetime, timedelta
from typing import Final

from azure.functions import meta
from croniter import croniter

from devhost.app_index import FunctionSpec
from devhost.config import HostConfigError
from devhost.invoke import InvocationError, Invoker

log = logging.getLogger(__name__)
PAST_DUE_AFTER: Final = timedelta(seconds=1)


def checked_schedule(spec: FunctionSpec) -> str:
    """The function's NCRONTAB expression, or a one-line error naming the function."""
    expression = str(spec.trigger.get("schedule", "")).strip()
    if len(expression.split()) != 6 or not croniter.is_valid(expression, second_at_beginning=True):
        raise HostConfigError(
            f"function '{spec.name}': schedule {expression!r} is not a six-field NCRONTAB "
            "expression (second minute hour day month day-of-week)"
        )
    if spec.trigger.get("runOnStartup"):
        raise HostConfigError(
            f"function '{spec.name}': the development host does not run timers on start-up "
            "(run one now with POST /admin/functions/NAME)"
        )
    return expression


def timer_datum(
    *, past_due: bool, last: datetime | None = None, next_tick: datetime | None = None
) -> meta.Datum:
    """What the host sends the worker for a timer tick (`TimerRequestConverter` decodes it)."""
    now = datetime.now(UTC)
    status = {
        "Last": (last or now).isoformat(),
        "Next": (next_tick or now).isoformat(),
        "LastUpdated": now.isoformat(),
    }
    info = {"Schedule": {"AdjustForDST": True}, "ScheduleStatus": status, "IsPastDue": past_due}
    return meta.Datum(json.dumps(info), "json")


class TimerSchedule:
    def __init__(self, spec: FunctionSpec, invoker: Invoker) -> None:
        self.spec = spec
        self.expression = checked_schedule(spec)
        self._invoker = invoker

    def _next_after(self, moment: datetime) -> datetime:
        tick: datetime = croniter(self.expression, moment, second_at_beginning=True).get_next(
            datetime
        )
        return tick

    async def run(self, stop: asyncio.Event) -> None:
        last: datetime | None = None
        due = self._next_after(datetime.now(UTC))
        while not stop.is_set():
            wait = (due - datetime.now(UTC)).total_seconds()
            if wait > 0:
                try:
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                    return
                except TimeoutError:
                    pass
            started = datetime.now(UTC)
            next_tick = self._next_after(max(due, started))
            past_due = started - due > PAST_DUE_AFTER
            await self._fire(past_due=past_due, last=last, next_tick=next_tick)
            # If the run overran `next_tick`, the loop fires once at once, past due; ticks
            # before `started` were never scheduled, so there is no burst of catch-up runs.
            last, due = due, next_tick

    async def _fire(
        self, *, past_due: bool, last: datetime | None, next_tick: datetime | None
    ) -> None:
        datum = timer_datum(past_due=past_due, last=last, next_tick=next_tick)
        with contextlib.suppress(InvocationError):  # logged; the schedule goes on
            await self._invoker.invoke(self.spec, datum)
