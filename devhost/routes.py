"""HTTP trigger route templates (`devices/{id:guid}`, `files/{*path}`, `runs/{id?}`) as regexes.

Literal segments win over parameters, parameters with a constraint over plain ones, catch-alls
last, as ASP.NET routing orders them. Constraints `guid`, `int`, `long`, `bool`, `alpha` are
enforced (a mismatch is a 404, as in Azure); any other constraint is ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

_PARAMETER = re.compile(r"\{([^{}]+)\}")
_CONSTRAINTS: Final[Mapping[str, str]] = {
    "guid": r"[0-9A-Fa-f]{8}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{4}-?[0-9A-Fa-f]{12}"
    r"|\{[0-9A-Fa-f-]{36}\}",
    "int": r"-?\d+",
    "long": r"-?\d+",
    "bool": r"(?i:true|false)",
    "alpha": r"[A-Za-z]+",
}
# Sort keys per segment: literal < constrained parameter < parameter < catch-all.
_LITERAL, _CONSTRAINED, _PLAIN, _CATCH_ALL = range(4)


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
        name, optional, kind, expression = _parameter(found.group(1))
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


def _parameter(spec: str) -> tuple[str, bool, int, str]:
    """(name, optional, precedence kind, regex) for the text inside `{...}`."""
    catch_all = spec.startswith("*")
    spec, _, default = spec.lstrip("*").partition("=")
    optional = spec.endswith("?") or bool(default) or catch_all
    name, *constraints = spec.rstrip("?").split(":")
    if catch_all:
        return name, optional, _CATCH_ALL, ".*"
    known = [c.split("(")[0].lower() for c in constraints]
    expressions = [_CONSTRAINTS[c] for c in known if c in _CONSTRAINTS]
    if expressions:
        return name, optional, _CONSTRAINED, f"(?:{expressions[0]})"
    return name, optional, _PLAIN, "[^/]+"


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
