"""Queue triggers polled from storage, following host.json `extensions.queues`.

As the WebJobs SDK's queue listener does: fetch up to `batchSize` messages, fetch again when no
more than `newBatchThreshold` are running, back off up to `maxPollingInterval` while the queue is
empty. A message is held invisible while its function runs (a lease renewed every
`LEASE / 3`); on success it is deleted; on failure it becomes visible again after
`visibilityTimeout`; after the `maxDequeueCount`-th failed attempt (or when fetched with a higher
dequeue count, e.g. after a crash) it is copied byte for byte to `<queue>-poison` and deleted.
On shutdown, messages whose function has not finished are made visible at once (released).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from azure.core.exceptions import AzureError
from azure.functions import meta
from azure.storage.queue import QueueMessage
from azure.storage.queue.aio import QueueClient

from devhost.app_index import FunctionSpec, connection_setting
from devhost.config import QueueOptions
from devhost.invoke import InvocationError, Invoker
from devhost.storage_clients import QueueClients

log = logging.getLogger(__name__)

# A killed development host's unfinished messages come back after at most 10 s (the real host
# holds them for minutes); renewed every 3.3 s while the function runs.
LEASE_SECONDS: Final = 10
MIN_POLLING_SECONDS: Final = 0.1
POISON_SUFFIX: Final = "-poison"


def message_datum(body: bytes) -> meta.Datum:
    """The trigger value: text when the body is UTF-8 (what `QueueMessage.get_body` returns)."""
    try:
        return meta.Datum(body.decode("utf-8"), "string")
    except UnicodeDecodeError:
        return meta.Datum(body, "bytes")


def message_metadata(
    *,
    message_id: str,
    dequeue_count: int,
    pop_receipt: str | None,
    inserted_on: datetime | None,
    expires_on: datetime | None,
    next_visible_on: datetime | None,
) -> dict[str, meta.Datum]:
    """Trigger metadata the `QueueMessageInConverter` reads, as the host sends it."""
    metadata = {
        "Id": meta.Datum(message_id, "string"),
        "DequeueCount": meta.Datum(dequeue_count, "int"),
        "PopReceipt": meta.Datum(pop_receipt, "string") if pop_receipt else None,
        "InsertionTime": _time(inserted_on),
        "ExpirationTime": _time(expires_on),
        "NextVisibleTime": _time(next_visible_on),
    }
    return {name: datum for name, datum in metadata.items() if datum is not None}


def _time(moment: datetime | None) -> meta.Datum | None:
    return None if moment is None else meta.Datum(moment.astimezone(UTC).isoformat(), "string")


def admin_message(payload: str) -> tuple[meta.Datum, dict[str, meta.Datum]]:
    """A message made up for `POST /admin/functions/{name}` (never stored in a queue)."""
    now = datetime.now(UTC)
    metadata = message_metadata(
        message_id=str(uuid.uuid4()),
        dequeue_count=1,
        pop_receipt=None,
        inserted_on=now,
        expires_on=None,
        next_visible_on=now,
    )
    return message_datum(payload.encode("utf-8")), metadata


@dataclass(slots=True)
class _Lease:
    """A fetched message; `pop_receipt` changes each time its visibility is updated."""

    message: QueueMessage
    pop_receipt: str
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    settled: bool = False


class QueueListener:
    def __init__(
        self, spec: FunctionSpec, invoker: Invoker, clients: QueueClients, options: QueueOptions
    ) -> None:
        self.spec = spec
        self.queue_name = str(spec.trigger["queueName"])
        self.connection = connection_setting(spec.trigger)
        self._invoker = invoker
        self._clients = clients
        self._options = options
        self._running: dict[asyncio.Task[None], _Lease] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; message tasks keep running (see `drain`)."""
        delay = MIN_POLLING_SECONDS
        warned = False
        while not stop.is_set():
            if len(self._running) > self._options.new_batch_threshold:
                await _first_of(stop, *self._running)
                continue
            try:
                client = await self._clients.queue(self.connection, self.queue_name)
                messages = await self._fetch(client)
                warned = False
            except (AzureError, OSError) as error:  # OSError: Azurite not listening
                if not warned:
                    log.warning(
                        "queue '%s' is not reachable (%s); retrying",
                        self.queue_name,
                        type(error).__name__,
                    )
                    warned = True
                messages = []
            for message in messages:
                lease = _Lease(message, message.pop_receipt or "")
                task = asyncio.create_task(self._process(client, lease))
                self._running[task] = lease
                task.add_done_callback(self._running.pop)
            if messages:
                delay = MIN_POLLING_SECONDS
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=delay)
            delay = min(delay * 2, self._options.max_polling_interval.total_seconds())

    async def _fetch(self, client: QueueClient) -> list[QueueMessage]:
        wanted = self._options.batch_size
        pages = client.receive_messages(
            messages_per_page=wanted, max_messages=wanted, visibility_timeout=LEASE_SECONDS
        )
        return [message async for message in pages]

    async def _process(self, client: QueueClient, lease: _Lease) -> None:
        message = lease.message
        extra = {"messageId": message.id, "function": self.spec.name}
        if message.dequeue_count and message.dequeue_count > self._options.max_dequeue_count:
            await self._poison(client, lease)
            return
        renewal = asyncio.create_task(self._renew(client, lease))
        try:
            succeeded = await self._invoke(message)
        finally:
            renewal.cancel()
        async with lease.lock:
            if lease.settled:
                return  # released at shutdown meanwhile
            try:
                if succeeded:
                    await client.delete_message(message.id, lease.pop_receipt)
                elif (message.dequeue_count or 1) >= self._options.max_dequeue_count:
                    await self._poison_locked(client, lease)
                else:
                    await self._set_visibility(
                        client, lease, int(self._options.visibility_timeout.total_seconds())
                    )
                lease.settled = True
            except AzureError:
                log.warning("could not settle queue message; it will be redelivered", extra=extra)

    async def _invoke(self, message: QueueMessage) -> bool:
        raw = str(message.content or "")
        if self._options.base64:
            try:
                body = base64.b64decode(raw, validate=True)
            except (binascii.Error, ValueError):
                log.error(
                    "queue message is not base64 (host.json messageEncoding): not invoked",
                    extra={"messageId": message.id, "function": self.spec.name},
                )
                return False
        else:
            body = raw.encode("utf-8")
        metadata = message_metadata(
            message_id=message.id,
            dequeue_count=message.dequeue_count or 1,
            pop_receipt=message.pop_receipt,
            inserted_on=message.inserted_on,
            expires_on=message.expires_on,
            next_visible_on=message.next_visible_on,
        )
        try:
            await self._invoker.invoke(self.spec, message_datum(body), metadata)
        except InvocationError:
            return False
        return True

    async def _renew(self, client: QueueClient, lease: _Lease) -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)  # a lease renewal period, not a sync wait
            async with lease.lock:
                if lease.settled:
                    return
                with contextlib.suppress(AzureError):
                    await self._set_visibility(client, lease, LEASE_SECONDS)

    async def _set_visibility(self, client: QueueClient, lease: _Lease, seconds: int) -> None:
        updated = await client.update_message(
            lease.message.id, lease.pop_receipt, visibility_timeout=seconds
        )
        lease.pop_receipt = updated.pop_receipt or lease.pop_receipt

    async def _poison(self, client: QueueClient, lease: _Lease) -> None:
        async with lease.lock:
            try:
                await self._poison_locked(client, lease)
            except AzureError:
                log.warning("could not move a message to the poison queue; will retry")

    async def _poison_locked(self, client: QueueClient, lease: _Lease) -> None:
        poison = self.queue_name + POISON_SUFFIX
        message = lease.message
        # The wire text as fetched (still base64 when the queue is): the copy is intact.
        poison_client = await self._clients.queue(self.connection, poison)
        await poison_client.send_message(message.content)
        await client.delete_message(message.id, lease.pop_receipt)
        lease.settled = True
        log.error(
            "message moved to '%s' after %s attempts",
            poison,
            message.dequeue_count,
            extra={"messageId": message.id, "function": self.spec.name},
        )

    async def drain(self, deadline: float) -> None:
        """Let running messages finish until `deadline` (loop time), then release the rest."""
        loop = asyncio.get_running_loop()
        pending = set(self._running)
        if pending:
            await asyncio.wait(pending, timeout=max(0.0, deadline - loop.time()))
        unfinished = {task: lease for task, lease in self._running.items() if not task.done()}
        for task, lease in unfinished.items():
            await self._release(lease)
            task.cancel()
        if unfinished:
            await asyncio.wait(unfinished, timeout=5)

    async def _release(self, lease: _Lease) -> None:
        async with lease.lock:
            if lease.settled:
                return
            client = await self._clients.queue(self.connection, self.queue_name)
            try:
                await self._set_visibility(client, lease, 0)
                log.warning(
                    "released unfinished message at shutdown",
                    extra={"messageId": lease.message.id, "function": self.spec.name},
                )
            except AzureError:
                log.warning("could not release message", extra={"messageId": lease.message.id})
            lease.settled = True


async def _first_of(stop: asyncio.Event, *tasks: asyncio.Task[None]) -> None:
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({stopping, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
