"""Call one function the way the Python worker does: converters in, converters out.

Trigger values arrive as `azure.functions.meta.Datum`s (what the worker gets from the host);
the trigger's registered `InConverter` decodes them, output parameters are `func.Out`s, and after
the function returns each output is encoded by its `OutConverter`. Queue outputs are sent only
after the function returned successfully; if sending fails the invocation fails.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import azure.functions as func
from azure.functions import meta

from devhost.app_index import RETURN, FunctionSpec, connection_setting
from devhost.storage_clients import QueueClients

log = logging.getLogger(__name__)
T = TypeVar("T")


class InvocationError(Exception):
    """The function raised, or its outputs could not be delivered."""

    def __init__(self, function: str, reason: str) -> None:
        super().__init__(f"function '{function}' failed: {reason}")
        self.function = function


class UnreadableTrigger(InvocationError):
    """The trigger's own `azure.functions` converter could not decode the input: not called."""


class _Out(func.Out[T], Generic[T]):
    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T:
        return self._value  # type: ignore[return-value]  # None when never set, as the worker


@dataclass(slots=True)
class InvocationResult:
    """What an invocation produced: the encoded outputs by binding name (`$return` included)."""

    invocation_id: str
    outputs: dict[str, meta.Datum] = field(default_factory=dict)


class Invoker:
    """Runs the app's `async def` functions on the host's loop."""

    def __init__(self, queues: QueueClients, *, queue_base64: bool) -> None:
        self._queues = queues
        self._queue_base64 = queue_base64

    async def invoke(
        self,
        spec: FunctionSpec,
        data: meta.Datum,
        trigger_metadata: Mapping[str, meta.Datum] | None = None,
    ) -> InvocationResult:
        outcome = InvocationResult(invocation_id=str(uuid.uuid4()))
        outs = {str(b["name"]): _Out[Any]() for b in spec.outputs if b["name"] != RETURN}
        log.info("Executing '%s'", spec.name, extra={"invocationId": outcome.invocation_id})
        trigger_value = self._decode(spec, data, trigger_metadata, outcome.invocation_id)
        try:
            arguments: dict[str, Any] = {str(spec.trigger["name"]): trigger_value}
            arguments.update({name: out for name, out in outs.items() if name in spec.parameters})
            returned = await spec.handler(**arguments)
            outcome.outputs = self._encode_outputs(spec, outs, returned)
            await self._send_queue_outputs(spec, outcome.outputs)
        except Exception as error:
            log.exception(
                "Executed '%s' (Failed)", spec.name, extra={"invocationId": outcome.invocation_id}
            )
            raise InvocationError(spec.name, type(error).__name__) from error
        log.info(
            "Executed '%s' (Succeeded)", spec.name, extra={"invocationId": outcome.invocation_id}
        )
        return outcome

    @staticmethod
    def _decode(
        spec: FunctionSpec,
        data: meta.Datum,
        trigger_metadata: Mapping[str, meta.Datum] | None,
        invocation_id: str,
    ) -> Any:
        """The trigger value, as the Python worker decodes it before calling the function."""
        converter = meta.get_binding_registry().get(spec.trigger_type)
        try:
            return converter.decode(data, trigger_metadata=dict(trigger_metadata or {}))
        except Exception as error:
            # Its message may quote the input: the class says enough.
            log.warning(
                "Executed '%s' (Failed): the trigger input cannot be decoded (%s)",
                spec.name,
                type(error).__name__,
                extra={"invocationId": invocation_id},
            )
            raise UnreadableTrigger(spec.name, type(error).__name__) from error

    @staticmethod
    def _encode_outputs(
        spec: FunctionSpec, outs: Mapping[str, _Out[Any]], returned: Any
    ) -> dict[str, meta.Datum]:
        encoded: dict[str, meta.Datum] = {}
        for binding in spec.outputs:
            name = str(binding["name"])
            value = returned if name == RETURN else outs[name].get()
            if value is None:
                continue
            converter = meta.get_binding_registry().get(binding["type"])
            datum = converter.encode(value, expected_type=None)
            if datum is not None:
                encoded[name] = datum
        return encoded

    async def _send_queue_outputs(
        self, spec: FunctionSpec, outputs: Mapping[str, meta.Datum]
    ) -> None:
        for binding in spec.outputs:
            datum = outputs.get(str(binding["name"]))
            if binding["type"] != "queue" or datum is None:
                continue
            await self._queues.send(
                connection_setting(binding),
                str(binding["queueName"]),
                _queue_bodies(datum),
                base64_encoding=self._queue_base64,
            )


def _queue_bodies(datum: meta.Datum) -> list[bytes]:
    """The messages a queue output Datum stands for (a json Datum is a list of messages)."""
    if datum.type == "string":
        return [str(datum.value).encode("utf-8")]
    if datum.type == "bytes":
        return [bytes(datum.value)]
    if datum.type == "json":
        items = json.loads(datum.value)
        items = items if isinstance(items, list) else [items]
        return [
            (item["body"] if isinstance(item, dict) else str(item)).encode("utf-8")
            for item in items
        ]
    raise TypeError(f"unsupported queue output type {datum.type}")
