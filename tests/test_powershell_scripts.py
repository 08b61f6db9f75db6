"""The device scripts parse as PowerShell (Windows PowerShell itself cannot be installed here).

A PowerShell grammar (tree-sitter-powershell) reads every `*.ps1` of the repository; a syntax
error would otherwise surface only on a device, as SYSTEM, where nobody watches the console.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import tree_sitter
import tree_sitter_powershell

ROOT = Path(__file__).resolve().parent.parent
SCRIPTS = sorted(path for path in ROOT.rglob("*.ps1") if ".venv" not in path.parts)
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
