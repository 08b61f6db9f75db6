"""The allowed import arrows between the project's parts (README "Architecture"), read from the
source with `ast`: a forbidden import fails here, naming the file and the module."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("function_app", "blueprints", "shared", "devhost", "devtools", "tests", "bench", "client")
# What each part must never import (everything else it may).
FORBIDDEN = {
    "function_app": {"devhost", "devtools", "tests", "bench", "client"},
    "blueprints": {"function_app", "devhost", "devtools", "tests", "bench", "client"},
    "shared": {"function_app", "blueprints", "devhost", "devtools", "tests", "bench", "client"},
    "devhost": {"function_app", "blueprints", "shared", "devtools", "tests", "bench", "client"},
    "devtools": {"function_app", "blueprints", "tests", "bench"},
    "client": {"function_app", "blueprints", "shared", "devhost", "devtools", "tests", "bench"},
}


def sources(part: str) -> Iterator[Path]:
    single = ROOT / f"{part}.py"
    if single.exists():
        yield single
    else:
        yield from sorted((ROOT / part).rglob("*.py"))


def imported_parts(path: Path) -> Iterator[tuple[int, str]]:
    """(line, top-level project part) of every absolute import in `path`, nested ones too."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        for name in names:
            top = name.split(".")[0]
            if top in PARTS:
                yield node.lineno, top


@pytest.mark.parametrize("part", sorted(FORBIDDEN))
def test_imports_point_only_the_allowed_way(part: str) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line} imports {target}"
        for path in sources(part)
        for line, target in imported_parts(path)
        if target in FORBIDDEN[part]
    ]
    assert found == []


def test_every_part_has_sources() -> None:
    """The check above cannot pass by finding nothing to read."""
    assert all(any(sources(part)) for part in FORBIDDEN)
