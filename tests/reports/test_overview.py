"""The fleet overview's snapshot and its summarization pass, directly on the test Azurite with
small pages: each test has its own tenant (its own partitions and overview row)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from shared.discovery import MalformedContinuation, parse_continuation
from shared.jobs import Job, send_job
from shared.names import DEVICE_STATUS, DISCOVERY_CONTINUE_QUEUE
from shared.reports import (
    PassResult,
    fleet_overview,
    latest_properties,
    parse_report,
    run_overview_pass,
)
from shared.storage import Storage
from tests.reports.helpers import report

STUCK_AFTER = timedelta(minutes=120)
PAGE = 4
NOW = datetime.now(UTC)


@dataclass
class Fleet:
    """Devices written into one tenant's `DeviceStatus`, with the numbers they must give."""

    tenant: str
    stages: Counter[str] = field(default_factory=Counter)
    diagnoses: Counter[str] = field(default_factory=Counter)
    installs: Counter[str] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return sum(self.stages.values())

    def check(self, overview: dict[str, Any]) -> None:
        assert overview["total"] == self.total
        assert {k: v for k, v in overview["counts"].items() if v} == dict(self.stages)
        assert {k: v for k, v in overview["diagnoses"].items() if v} == dict(self.diagnoses)
        shown = {d["day"]: d["count"] for d in overview["installsByDay"] if d["count"]}
        assert shown == dict(self.installs)


# (stage, diagnosis, report fields, age): each kind of device once per round.
KINDS: list[tuple[str, str, dict[str, Any], timedelta]] = [
    ("installed", "installed", {}, timedelta(hours=1)),
    ("installed", "installed", {}, timedelta(days=3)),
    ("installed", "installed", {}, timedelta(days=40)),  # before the chart's 30 days
    ("failed", "prerequisite-failure", {"ccmsetupExitCode": 9}, timedelta(minutes=5)),
    (
        "failed",
        "not-joined",
        {"dsregcmd": {"AzureAdJoined": "NO", "DomainJoined": "NO"}},
        timedelta(minutes=5),
    ),
    ("installing", "stuck-installing", {"ccmsetupExitCode": None}, timedelta(hours=5)),
    ("installing", "in-progress", {"ccmsetupExitCode": None}, timedelta(minutes=5)),
    (
        "failed",
        "user-not-discovered",
        {"installErrorCode": 0x87D00231, "userObjectId": "6e7a5a0b-59b4-4bd2-9bd4-1b8f5b2d1c11"},
        timedelta(minutes=5),
    ),
]


async def write_fleet(storage: Storage, rounds: int = 2) -> Fleet:
    fleet = Fleet(str(uuid.uuid4()))
    await add_devices(storage, fleet, rounds)
    return fleet


async def add_devices(storage: Storage, fleet: Fleet, rounds: int) -> None:
    table = await storage.table(DEVICE_STATUS)
    for _ in range(rounds):
        for stage, diagnosis, fields, age in KINDS:
            body = report(stage=stage, reported_at=NOW - age, **fields)
            row = {
                "PartitionKey": fleet.tenant,
                "RowKey": body["deviceId"],
                **{k: v for k, v in latest_properties(parse_report(body)).items() if v is not None},
                "lastReportAt": NOW - age,
                "reportCount": 1,
            }
            await table.create_entity(row)
            fleet.stages[stage] += 1
            fleet.diagnoses[diagnosis] += 1
            if stage == "installed" and age < timedelta(days=29):
                fleet.installs[(NOW - age).date().isoformat()] += 1
        # A row recorded before dsregcmdFacts existed: the pass reads its raw dsregcmd.
        legacy = str(uuid.uuid4())
        await table.create_entity(
            {
                "PartitionKey": fleet.tenant,
                "RowKey": legacy,
                "stage": "failed",
                "ccmsetupExitCode": 6,
                "reportedAt": NOW,
                "lastReportAt": NOW,
                "dsregcmd": json.dumps({"AzureAdJoined": "NO", "DomainJoined": "NO"}),
            }
        )
        fleet.stages["failed"] += 1
        fleet.diagnoses["not-joined"] += 1


class Requests:
    """What the overview asks of the queue: counted, not sent (see the continuation test)."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self) -> None:
        self.count += 1


def later(seconds: float) -> Callable[[], datetime]:
    return lambda: datetime.now(UTC) + timedelta(seconds=seconds)


async def run_pass(storage: Storage, tenant: str, **options: Any) -> PassResult:
    options.setdefault("request_pass", Requests())
    return await run_overview_pass(
        tenant,
        stuck_after=STUCK_AFTER,
        page_size=PAGE,
        storage=storage,
        **options,
    )


async def overview(storage: Storage, tenant: str, requests: Requests, **options: Any) -> Any:
    return await fleet_overview(tenant, request_pass=requests, storage=storage, **options)


async def test_a_pass_publishes_the_numbers_the_devices_give(storage: Storage) -> None:
    fleet = await write_fleet(storage)
    requests = Requests()
    first = await overview(storage, fleet.tenant, requests)
    assert (first["asOf"], first["refreshing"], first["total"]) == (None, True, 0)
    assert len(first["installsByDay"]) == 30
    assert requests.count == 1

    started = datetime.now(UTC)
    result = await run_pass(storage, fleet.tenant)
    assert result == PassResult("published", fleet.total, -(-fleet.total // PAGE))

    answer = await overview(storage, fleet.tenant, requests)
    fleet.check(answer)
    assert answer["refreshing"] is False
    assert started <= datetime.fromisoformat(answer["asOf"]) <= datetime.now(UTC)
    assert answer["asOf"].endswith("Z")
    assert answer["installsByDay"][-1]["day"] == answer["asOf"][:10]
    assert requests.count == 1  # fresh: nothing more asked


async def test_a_pass_out_of_time_continues_through_the_queue(storage: Storage) -> None:
    """Budget 0: one page per invocation, each continued by a real `discovery-continue` message
    that parses back into the overview job."""
    fleet = await write_fleet(storage)
    queue = await storage.queue(DISCOVERY_CONTINUE_QUEUE)
    job = Job(fleet.tenant, "overview")
    asked = Requests()

    async def continue_pass() -> None:
        await send_job(job, storage)

    async def take_message() -> Job:
        """Our tenant's message; the queue is the session's, shared with other tests."""
        parsed: object = None
        for _ in range(50):
            async for message in queue.receive_messages(messages_per_page=32, visibility_timeout=5):
                with contextlib.suppress(MalformedContinuation):
                    parsed = parse_continuation(message.content)
                if parsed == job:
                    await queue.delete_message(message)
                    return parsed
        raise AssertionError("no overview message was queued")

    invocations = 0
    while True:
        invocations += 1
        assert invocations <= 10
        result = await run_pass(storage, fleet.tenant, budget_seconds=0, request_pass=continue_pass)
        if result.status == "published":
            break
        assert result == PassResult("continued", PAGE, 1)
        # Between invocations the request sees the pass asked for and asks nothing more.
        between = await overview(storage, fleet.tenant, asked)
        assert (between["asOf"], between["refreshing"]) == (None, True)
        assert await take_message() == job
    assert invocations == -(-fleet.total // PAGE)
    assert asked.count == 0
    fleet.check(await overview(storage, fleet.tenant, asked))


class Killed(BaseException):
    """The host dying mid-pass: nothing in the product catches it, nothing runs after it."""


def dies_on_call(n: int) -> Callable[[], datetime]:
    """A clock that kills the pass the `n`th time it is read (the pass reads it once to start
    and once per checkpoint, so `n` = 3 dies after its first page is checkpointed)."""
    calls = 0

    def clock() -> datetime:
        nonlocal calls
        calls += 1
        if calls == n:
            raise Killed
        return datetime.now(UTC)

    return clock


async def test_a_pass_killed_half_way_resumes_after_its_lease_and_counts_each_device_once(
    storage: Storage,
) -> None:
    fleet = await write_fleet(storage)
    with pytest.raises(Killed):
        await run_pass(storage, fleet.tenant, clock=dies_on_call(3))

    # The lease is left held: nobody else runs the pass, and a request asks for nothing.
    assert (await run_pass(storage, fleet.tenant)).status == "busy"
    requests = Requests()
    held = await overview(storage, fleet.tenant, requests)
    assert (held["asOf"], held["refreshing"], requests.count) == (None, True, 0)

    # After the lease (30 s) the next pass resumes from the checkpoint: one page was counted.
    resumed = await run_pass(storage, fleet.tenant, clock=later(31))
    assert resumed.status == "published"
    assert resumed.devices == fleet.total - PAGE
    fleet.check(await overview(storage, fleet.tenant, requests))


async def test_a_checkpoint_too_old_to_publish_is_started_afresh(storage: Storage) -> None:
    fleet = await write_fleet(storage)
    with pytest.raises(Killed):
        await run_pass(storage, fleet.tenant, clock=dies_on_call(3))
    restarted = await run_pass(storage, fleet.tenant, clock=later(11 * 60))
    assert (restarted.status, restarted.devices) == ("published", fleet.total)
    answer = await overview(storage, fleet.tenant, Requests(), clock=later(11 * 60))
    assert datetime.fromisoformat(answer["asOf"]) > datetime.now(UTC) + timedelta(minutes=10)
    fleet.check(answer)


async def test_a_burst_of_requests_queues_one_pass(storage: Storage) -> None:
    fleet = await write_fleet(storage, rounds=1)
    requests = Requests()
    answers = await asyncio.gather(*(overview(storage, fleet.tenant, requests) for _ in range(20)))
    assert requests.count == 1
    assert all(a["refreshing"] and a["asOf"] is None for a in answers)

    await run_pass(storage, fleet.tenant)
    # A minute on, the snapshot is stale: a second burst asks for one more pass.
    stale = await asyncio.gather(
        *(overview(storage, fleet.tenant, requests, clock=later(61)) for _ in range(20))
    )
    assert requests.count == 2
    assert all(a["refreshing"] and a["total"] == fleet.total for a in stale)


async def test_the_request_answers_the_snapshot_not_the_devices(storage: Storage) -> None:
    """No query of DeviceStatus on the request path: devices added after the pass are not in the
    answer until the next pass counts them."""
    fleet = await write_fleet(storage, rounds=1)
    before = fleet.total
    await run_pass(storage, fleet.tenant)
    requests = Requests()
    published = await overview(storage, fleet.tenant, requests)
    await add_devices(storage, fleet, rounds=2)

    again = await overview(storage, fleet.tenant, requests)
    assert again == published
    assert (again["total"], again["refreshing"], requests.count) == (before, False, 0)
    stale = await overview(storage, fleet.tenant, requests, clock=later(61))
    assert (stale["total"], stale["asOf"], stale["refreshing"]) == (before, again["asOf"], True)
    assert requests.count == 1

    await run_pass(storage, fleet.tenant)
    fleet.check(await overview(storage, fleet.tenant, requests))
