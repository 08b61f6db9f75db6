"""HTTP trigger route templates (`runs`, `devices/{deviceId}`, `jwks/{variant?}`) as regexes.

Literal segments win over parameters, as ASP.NET routing orders them. What the app's routes use
and nothing more: route constraints (`{id:guid}`), defaults and catch-alls (`{*path}`) are refused
at start-up rather than half-served.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from devhost.config import HostConfigError

_PARAMETER = re.compile(r"\{([^{}]+)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\??")
# Sort keys per segment: a literal before a parameter.
_LITERAL, _PLAIN = range(2)


@dataclass(frozen=True, slots=True)
class Route:
    function: str
    template: str
    methods: frozenset[str] | None  # None: every method
    pattern: re.Pattern[str]
    parameter_names: tuple[str, ...]
    precedence: tuple[int, ...]

    def match(self, path: str) -> dict[str, str] | None:
        found = self.pattern.fullmatch(path)
        if found is None:
            return None
        return {
            name: value
            for name, value in zip(self.parameter_names, found.groups(), strict=True)
            if value is not None
        }

    def allows(self, method: str) -> bool:
        return self.methods is None or method.upper() in self.methods


def compile_route(function: str, template: str, methods: Iterable[str] | None) -> Route:
    template = template.strip("/")
    pieces: list[str] = []
    names: list[str] = []
    precedence: list[int] = []
    position = 0
    for found in _PARAMETER.finditer(template):
        literal = template[position : found.start()]
        name, optional = _parameter(function, found.group(1))
        kind, expression = _PLAIN, "[^/]+"
        if optional and literal.endswith("/") and found.end() == len(template):
            # "runs/{id?}" also matches "runs": the slash goes with the optional value.
            pieces.append(_literal(literal[:-1]))
            pieces.append(f"(?:/({expression}))?")
        else:
            pieces.append(_literal(literal))
            pieces.append(f"({expression})" + ("?" if optional else ""))
        names.append(name)
        precedence.extend([_LITERAL] * literal.count("/"))
        precedence.append(kind)
        position = found.end()
    pieces.append(_literal(template[position:]))
    precedence.extend([_LITERAL] * (template[position:].count("/") + 1))
    return Route(
        function=function,
        template=template,
        methods=frozenset(m.upper() for m in methods) if methods else None,
        pattern=re.compile("".join(pieces)),
        parameter_names=tuple(names),
        precedence=tuple(precedence),
    )


def _literal(text: str) -> str:
    return f"(?i:{re.escape(text)})" if text else ""


def _parameter(function: str, spec: str) -> tuple[str, bool]:
    """(name, optional) for the text inside `{...}`: `name` or `name?`."""
    if not _NAME.fullmatch(spec):
        raise HostConfigError(
            f"function '{function}': route parameter {{{spec}}}: the development host serves "
            "plain and optional parameters only"
        )
    return spec.rstrip("?"), spec.endswith("?")


class RouteTable:
    """Every HTTP route of the app, most specific first."""

    def __init__(self, routes: Iterable[Route]) -> None:
        self.routes = sorted(routes, key=lambda route: route.precedence)

    def resolve(self, path: str, method: str) -> tuple[Route, dict[str, str]] | frozenset[str]:
        """The route and its parameters, or the methods the path allows (empty: no such path)."""
        allowed: set[str] = set()
        for route in self.routes:
            params = route.match(path)
            if params is None:
                continue
            if route.allows(method):
                return route, params
            allowed |= route.methods or set()
        return frozenset(allowed)
