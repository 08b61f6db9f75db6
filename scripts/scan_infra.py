"""Scan infra/ with checkov (offline) and fail unless it is clean.

    python3.11 scripts/scan_infra.py        # what `make scan-infra` runs

Installs checkov into its own venv (.venv-scan, from requirements-scan.txt: checkov's pins conflict
with the app's) when missing or stale, scans a copy of infra/ with `--framework bicep
--skip-download`, and fails on any parsing error (checkov reports those without failing), any
failed check, or any skip without a reason. Skips are `// checkov:skip=CKV_...: reason` comments
beside the resource in the Bicep.

checkov's Bicep parser (pycep) predates the `extension` statement that the Microsoft Graph Bicep
extension needs, so the copy has each bare `extension <name>` line turned into a comment (same line
numbers); nothing else changes, so every resource, Graph ones included, is still parsed.

Standard library only: it runs before any venv exists.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent
INFRA: Final = ROOT / "infra"
SCAN_VENV: Final = ROOT / ".venv-scan"
REQUIREMENTS: Final = ROOT / "requirements-scan.txt"
_INSTALLED_MARKER: Final = SCAN_VENV / ".installed"
_EXTENSION_LINE: Final = re.compile(r"^extension [A-Za-z_][A-Za-z0-9_]*\s*$")
_SKIP_WITH_REASON: Final = re.compile(r"checkov:skip=(CKV2?_[A-Z]+_\d+):\s*(\S.*)")
_SKIP_ANY: Final = re.compile(r"checkov:skip=([A-Za-z0-9_,-]+)(.*)")


class ScanFailed(Exception):
    """The scan found something to fix; the message says what, one item a line."""


@dataclass(frozen=True, slots=True)
class ScanSummary:
    passed: int
    skipped: list[str] = field(default_factory=list)
    resources: int = 0


def ensure_scanner(python: str = sys.executable) -> Path:
    """The checkov executable, installing it into .venv-scan first when needed."""
    checkov = SCAN_VENV / "bin" / "checkov"
    stale = (
        not _INSTALLED_MARKER.exists()
        or _INSTALLED_MARKER.stat().st_mtime < REQUIREMENTS.stat().st_mtime
    )
    if stale:
        if not (SCAN_VENV / "bin" / "python").exists():
            subprocess.run([python, "-m", "venv", str(SCAN_VENV)], check=True)
        pip = [str(SCAN_VENV / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "--disable-pip-version-check", "-r", str(REQUIREMENTS)], check=True)
        _INSTALLED_MARKER.touch()
    return checkov


def neutralise_extensions(source: str) -> tuple[str, int]:
    """Comment out bare `extension NAME` statements; returns the text and how many changed."""
    lines = source.splitlines(keepends=True)
    changed = 0
    for index, line in enumerate(lines):
        if _EXTENSION_LINE.match(line):
            lines[index] = "// " + line
            changed += 1
    return "".join(lines), changed


def copy_for_scan(infra: Path, target: Path) -> int:
    """Copy infra/ to `target` with extension statements neutralised; returns how many."""
    shutil.copytree(infra, target)
    changed = 0
    for bicep in target.rglob("*.bicep"):
        text, count = neutralise_extensions(bicep.read_text(encoding="utf-8"))
        if count:
            bicep.write_text(text, encoding="utf-8")
            changed += count
    return changed


def skips_without_reason(infra: Path) -> list[str]:
    """`checkov:skip=` comments that do not name one check and give a reason."""
    problems = []
    for bicep in sorted(infra.rglob("*.bicep")):
        for number, line in enumerate(bicep.read_text(encoding="utf-8").splitlines(), 1):
            if _SKIP_ANY.search(line) and not _SKIP_WITH_REASON.search(line):
                problems.append(f"{bicep.relative_to(infra)}:{number}: skip without a reason")
    return problems


def evaluate(report: dict[str, Any] | list[dict[str, Any]]) -> ScanSummary:
    """Check a checkov JSON report: zero parsing errors, zero failed checks."""
    reports = report if isinstance(report, list) else [report]
    bicep = [r for r in reports if r.get("check_type") == "bicep"]
    if not bicep:
        raise ScanFailed("checkov produced no bicep report (no .bicep files scanned?)")
    summary = bicep[0]["summary"]
    results = bicep[0].get("results", {})
    problems = [f"parsing error: {path}" for path in results.get("parsing_errors", [])]
    if summary["parsing_errors"] and not problems:
        problems.append(f"{summary['parsing_errors']} parsing error(s)")
    problems += [
        f"{f['check_id']} {f['resource']} ({f['file_path']}:{f['file_line_range'][0]}): "
        f"{f['check_name']}"
        for f in results.get("failed_checks", [])
    ]
    if summary["failed"] and not results.get("failed_checks"):
        problems.append(f"{summary['failed']} failed check(s)")
    if problems:
        raise ScanFailed("\n".join(problems))
    skipped = [f"{s['check_id']} {s['resource']}" for s in results.get("skipped_checks", [])]
    return ScanSummary(
        passed=int(summary["passed"]), skipped=skipped, resources=int(summary["resource_count"])
    )


def run_checkov(checkov: Path, directory: Path) -> dict[str, Any] | list[dict[str, Any]]:
    command = [
        str(checkov),
        "--directory",
        str(directory),
        "--framework",
        "bicep",
        "--skip-download",
        "--compact",
        "--output",
        "json",
    ]
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    # Exit code 1 only means failed checks; evaluate() reports them. Anything else is a crash.
    if completed.returncode not in (0, 1) or not completed.stdout.strip():
        detail = completed.stderr.strip()[-2000:]
        raise ScanFailed(f"checkov exited {completed.returncode}: {detail}")
    report: dict[str, Any] | list[dict[str, Any]] = json.loads(completed.stdout)
    return report


# The gate's self-test: a copy with storage TLS lowered to 1.0 must fail on this check, so a
# scanner that silently passes everything (an upgrade, a parsing change) is caught here.
WEAKENING: Final = ("minimumTlsVersion: 'TLS1_2'", "minimumTlsVersion: 'TLS1_0'")
WEAKENED_CHECK: Final = "CKV_AZURE_44 Microsoft.Storage"


def gate_bites(checkov: Path, copy: Path) -> None:
    """Raise `ScanFailed` unless a weakened copy of infra/ fails the scan on `WEAKENED_CHECK`."""
    copy_for_scan(INFRA, copy)
    app = copy / "modules" / "app.bicep"
    source = app.read_text(encoding="utf-8")
    if WEAKENING[0] not in source:
        raise ScanFailed(f"self-test: {WEAKENING[0]!r} is no longer in infra/modules/app.bicep")
    app.write_text(source.replace(*WEAKENING), encoding="utf-8")
    try:
        evaluate(run_checkov(checkov, copy))
    except ScanFailed as failure:
        if WEAKENED_CHECK in str(failure):
            return
        raise ScanFailed(f"self-test: the weakened copy failed otherwise: {failure}") from None
    raise ScanFailed("self-test: a copy with storage TLS 1.0 passed the scan; the gate is blind")


def main() -> int:
    started = time.perf_counter()
    checkov = ensure_scanner()
    installed = time.perf_counter()
    try:
        problems = skips_without_reason(INFRA)
        if problems:
            raise ScanFailed("\n".join(problems))
        with tempfile.TemporaryDirectory(prefix="scan-infra-") as scratch:
            copy = Path(scratch) / "infra"
            neutralised = copy_for_scan(INFRA, copy)
            summary = evaluate(run_checkov(checkov, copy))
            gate_bites(checkov, Path(scratch) / "weakened")
        written = sum(f.read_text().count("checkov:skip=") for f in INFRA.rglob("*.bicep"))
        if len(summary.skipped) != written:
            raise ScanFailed(f"{len(summary.skipped)} checks skipped, {written} skips written")
    except ScanFailed as failure:
        print(f"scan-infra: FAILED\n{failure}", file=sys.stderr)
        return 1
    finished = time.perf_counter()
    print(
        f"scan-infra: OK: {summary.resources} resources, {summary.passed} checks passed, "
        f"0 failed, 0 parsing errors, {len(summary.skipped)} skipped with reasons, "
        f"{neutralised} extension statement(s) neutralised; a weakened copy fails as it must; "
        f"install {installed - started:.1f} s, scan {finished - installed:.1f} s"
    )
    for skip in summary.skipped:
        print(f"  skipped: {skip}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
