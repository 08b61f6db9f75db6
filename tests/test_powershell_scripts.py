"""The device scripts parse as PowerShell (Windows PowerShell itself cannot be installed here).

A PowerShell grammar (tree-sitter-powershell) reads every `*.ps1` of the repository; a syntax
error would otherwise surface only on a device, as SYSTEM, where nobody watches the console.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

ROOT = Path(__file__).resolve().parent.parent
# Installed packages and hidden folders are not the project's (node_modules alone holds ~30,000
# folders: walking it cost every test worker ~1 s at collection).
NOT_OURS = frozenset({"node_modules", "artifacts"})


def repository_scripts() -> list[Path]:
    found: list[Path] = []
    for folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [d for d in subfolders if d not in NOT_OURS and not d.startswith(".")]
        found += [Path(folder, name) for name in files if name.endswith(".ps1")]
    return sorted(found)


SCRIPTS = repository_scripts()
PARSER = tree_sitter.Parser(tree_sitter.Language(tree_sitter_powershell.language()))


def syntax_errors(source: bytes) -> list[str]:
    """`line:column: text` of each innermost node the grammar could not read."""
    errors: list[str] = []
    pending = [PARSER.parse(source).root_node]
    while pending:
        node = pending.pop()
        if node.is_missing or (node.has_error and not any(c.has_error for c in node.children)):
            row, column = node.start_point
            text = source[node.start_byte : node.end_byte][:80].decode(errors="replace")
            errors.append(f"{row + 1}:{column + 1}: {text!r}")
        pending.extend(child for child in node.children if child.has_error or child.is_missing)
    return sorted(errors)


def test_the_client_scripts_are_found():
    assert {"Invoke-CMBootstrap.ps1", "Dsregcmd.ps1"} <= {path.name for path in SCRIPTS}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda path: path.name)
def test_script_parses_as_powershell(script: Path):
    assert syntax_errors(script.read_bytes()) == []


@pytest.mark.parametrize(
    "broken",
    [
        b"function Get-X { if ($a -eq 1) { 'one' }\n",  # unclosed function body
        b"$table = @{ a = 1; b = (2 + }\n",  # unclosed expression
        b"try { Get-Item x } catch [System.IO.IOException { }\n",  # unclosed type literal
    ],
)
def test_a_broken_script_is_reported(broken: bytes):
    assert syntax_errors(broken) != []
