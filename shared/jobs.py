"""Background jobs queued on `discovery-continue`: `{"tenant": id, "job": name}`.

A job is long work a request or a run asks for and does not wait for (a request never does
long work); the queue invocation runs it with a time budget and, when the budget is spent, the
job queues its own continuation. The message names the job only: its progress lives in the
job's own checkpoint, so a repeated or stale message costs one state read.

This module is neither discovery's nor a job's: `shared.discovery` parses the queue's messages
and jobs live in the packages that own them (`shared.profiles`: the resolved install profiles'
rebuild; `shared.reports`: the fleet overview's summarization pass), which must not import
discovery (discovery imports them).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Final, Literal

from shared.names import DISCOVERY_CONTINUE_QUEUE
from shared.storage import Storage, get_storage, translate_errors

JobName = Literal["profiles", "overview"]
JOBS: Final[tuple[JobName, ...]] = ("profiles", "overview")


@dataclass(frozen=True, slots=True)
class Job:
    tenant_id: str
    job: JobName

    def to_json(self) -> str:
        return json.dumps({"tenant": self.tenant_id, "job": self.job})


async def send_job(job: Job, storage: Storage | None = None, *, delay_seconds: int = 0) -> None:
    """Queue `job`, visible after `delay_seconds`."""
    queue = await (storage or get_storage()).queue(DISCOVERY_CONTINUE_QUEUE)
    async with translate_errors():
        await queue.send_message(job.to_json(), visibility_timeout=delay_seconds or None)
