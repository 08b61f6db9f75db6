"""Import `function_app.app`, index its functions once and resolve their bindings.

What the host takes from the app module: `app` (an `azure.functions.FunctionApp`) and, optionally,
`shutdown`, an `async def shutdown() -> None` the host awaits once when it stops, after the last
invocation, on the loop the functions ran on (to close the clients the app opened).
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import azure.functions as func

from devhost.config import HostConfigError, resolve_settings

DEFAULT_CONNECTION: Final = "AzureWebJobsStorage"
HTTP_TRIGGER: Final = "httpTrigger"
TIMER_TRIGGER: Final = "timerTrigger"
QUEUE_TRIGGER: Final = "queueTrigger"
EVENT_GRID_TRIGGER: Final = "eventGridTrigger"
SUPPORTED_TRIGGERS: Final = frozenset(
    {HTTP_TRIGGER, TIMER_TRIGGER, QUEUE_TRIGGER, EVENT_GRID_TRIGGER}
)
SUPPORTED_OUTPUTS: Final = frozenset({"http", "queue"})
RETURN: Final = "$return"


@dataclass(frozen=True, slots=True)
class FunctionSpec:
    """One indexed function: its trigger and output bindings with `%SETTING%` resolved."""

    name: str
    trigger: Mapping[str, Any]
    outputs: tuple[Mapping[str, Any], ...]
    handler: Callable[..., Awaitable[Any]]
    parameters: frozenset[str]

    @property
    def trigger_type(self) -> str:
        return str(self.trigger["type"])


def connection_setting(binding: Mapping[str, Any]) -> str:
    """The setting naming a binding's storage account (`AzureWebJobsStorage` if unset)."""
    return str(binding.get("connection") or DEFAULT_CONNECTION)


@dataclass(frozen=True, slots=True)
class LoadedApp:
    functions: list[FunctionSpec]
    shutdown: Callable[[], Awaitable[None]] | None


def load_app(script_root: Path, environ: Mapping[str, str]) -> LoadedApp:
    """Import `function_app` from `script_root` and index it (`get_functions()` may run once)."""
    root = str(script_root.resolve())
    if root not in sys.path:
        sys.path.insert(0, root)
    module = importlib.import_module("function_app")
    app = getattr(module, "app", None)
    if not isinstance(app, func.FunctionApp):
        raise HostConfigError(f"{script_root}/function_app.py defines no `app = FunctionApp()`")
    shutdown = getattr(module, "shutdown", None)
    if shutdown is not None and not inspect.iscoroutinefunction(shutdown):
        raise HostConfigError(f"{script_root}/function_app.py: `shutdown` is not an async def")
    functions = [_spec(function, environ) for function in app.get_functions()]
    return LoadedApp(functions, shutdown)


def _spec(function: func.Function, environ: Mapping[str, str]) -> FunctionSpec:
    name = function.get_function_name() or function.get_user_function().__name__
    bindings = [json.loads(raw) for raw in function.get_raw_bindings()]
    resolved = [_resolve(binding, environ, where=f"function '{name}'") for binding in bindings]
    triggers = [b for b in resolved if str(b.get("type", "")).endswith("Trigger")]
    if len(triggers) != 1:
        raise HostConfigError(f"function '{name}' must have exactly one trigger")
    trigger = triggers[0]
    if trigger["type"] not in SUPPORTED_TRIGGERS:
        raise HostConfigError(
            f"function '{name}': the development host does not run {trigger['type']} triggers"
        )
    outputs = tuple(b for b in resolved if str(b.get("direction", "")).upper() == "OUT")
    for output in outputs:
        if output["type"] not in SUPPORTED_OUTPUTS:
            raise HostConfigError(
                f"function '{name}': the development host has no {output['type']} output binding"
            )
    handler = function.get_user_function()
    if not inspect.iscoroutinefunction(handler):
        raise HostConfigError(f"function '{name}': the development host runs `async def` only")
    return FunctionSpec(
        name=name,
        trigger=trigger,
        outputs=outputs,
        handler=handler,
        parameters=frozenset(inspect.signature(handler).parameters),
    )


def _resolve(binding: dict[str, Any], environ: Mapping[str, str], *, where: str) -> dict[str, Any]:
    label = f"{where} binding '{binding.get('name')}'"
    return {
        key: resolve_settings(value, environ, where=f"{label} {key}")
        if isinstance(value, str)
        else value
        for key, value in binding.items()
    }
