"""Deployment: Bicep carries the contract (settings, tables, queues, roles); the scan gate bites.

`make scan-infra` (part of `make test`, once per run) runs checkov on infra/ and then on a copy
weakened on purpose, which must fail (the gate's self-test). These tests check what checkov cannot
(every setting and storage name of the contract reaches Azure) and the gate's own rules, fast.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType

import pytest

from shared.names import ALL_QUEUES, ALL_TABLES

ROOT = Path(__file__).resolve().parent.parent
INFRA = ROOT / "infra"
MAIN = (INFRA / "main.bicep").read_text(encoding="utf-8")
APP = (INFRA / "modules" / "app.bicep").read_text(encoding="utf-8")
SETTINGS_SOURCE = (ROOT / "shared" / "settings.py").read_text(encoding="utf-8")


def _load_scan_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("scan_infra", ROOT / "scripts" / "scan_infra.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


scan = _load_scan_module()


def _object_keys(source: str, variable: str) -> set[str]:
    """Keys of a Bicep object literal assigned as `variable: {` or `var variable = {`."""
    start = re.search(rf"(?:var {variable} =|{variable}:) \{{\n", source)
    assert start, f"{variable} not found"
    keys: set[str] = set()
    for line in source[start.end() :].splitlines():
        if re.match(r"\s*\}", line):
            return keys
        match = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*):", line)
        if match:
            keys.add(match.group(1))
    raise AssertionError(f"{variable} is not closed")


def test_every_setting_the_app_reads_is_set_on_the_function_app():
    read = set(re.findall(r'reader\.\w+\(\s*"([A-Za-z_]+)"', SETTINGS_SOURCE))
    assert {"AAD_TENANT_ID", "CCM_HOSTNAME", "ADMIN_ROLE"} <= read  # the pattern still matches
    configured = _object_keys(MAIN, "appSettings") | _object_keys(APP, "resourceSettings")
    # A Key Vault key signs in Azure; PEM files are the local alternative, never deployed.
    assert {name for name in read - configured if not name.endswith("_KEY_FILE")} == set()
    assert {
        "AzureWebJobsStorage__accountName",
        "AzureWebJobsStorage__credential",
        "AzureWebJobsStorage__clientId",
        "AZURE_CLIENT_ID",
        "APPLICATIONINSIGHTS_CONNECTION_STRING",
        "APPLICATIONINSIGHTS_AUTHENTICATION_STRING",
    } <= configured
    assert "AZURE_FUNCTIONS_ENVIRONMENT: 'Production'" in MAIN
    assert "BUNDLE_SIGNING_KEY_ID: effectiveSigningKeyId" in APP


def test_the_signing_key_version_is_pinned_explicitly_after_the_first_provision():
    """azd keeps main.bicep's outputs in the environment and main.parameters.json passes
    BUNDLE_SIGNING_KEY_ID back as signingKeyId: the vault's newest version is read only while
    none is pinned (the first provision), so a version made later never signs unannounced."""
    assert (
        "var effectiveSigningKeyId = empty(signingKeyId) ? "
        "signingKey.properties.keyUriWithVersion : signingKeyId"
    ) in APP
    assert "output signingKeyId string = effectiveSigningKeyId" in APP
    assert "output BUNDLE_SIGNING_KEY_ID string = app.outputs.signingKeyId" in MAIN
    parameters = json.loads((INFRA / "main.parameters.json").read_text())
    assert parameters["parameters"]["signingKeyId"]["value"] == "${BUNDLE_SIGNING_KEY_ID=}"
    assert "keyUriWithVersion" not in MAIN


def test_every_table_and_queue_with_its_poison_queue_is_created():
    declared = set(re.findall(r"^  '([A-Za-z-]+)'$", APP, flags=re.MULTILINE))
    poison = {f"{queue}-poison" for queue in ALL_QUEUES}
    assert set(ALL_TABLES) | set(ALL_QUEUES) | poison <= declared


def test_role_assignments_are_named_with_guid_and_scoped_narrowly():
    bicep_sources = [path.read_text(encoding="utf-8") for path in INFRA.rglob("*.bicep")]
    assignments = [
        block
        for source in bicep_sources
        for block in re.findall(
            r"'Microsoft\.Authorization/roleAssignments@[^']+' = (?:if \([^)]*\) )?\{\n(.*?)\n\}",
            source,
            flags=re.DOTALL,
        )
    ]
    assert len(assignments) >= 6
    for block in assignments:
        assert re.search(r"^  name: guid\(", block, flags=re.MULTILINE), block
    signing = next(b for b in assignments if "roles.keyVaultCryptoUser" in b)
    assert "scope: signingKey" in signing  # sign with this key only, not the whole vault


@pytest.mark.parametrize(
    ("text", "changed"),
    [
        ("extension microsoftGraphV1\nparam a string\n", 1),
        ("// extension microsoftGraphV1 in a comment\n", 0),
        ("param extension string\nvar x = 'extension y'\n", 0),
    ],
)
def test_only_bare_extension_statements_are_neutralised(text, changed):
    result, count = scan.neutralise_extensions(text)
    assert count == changed
    assert result.count("\n") == text.count("\n")  # line numbers in findings stay true
    if not changed:
        assert result == text


def test_a_skip_without_a_reason_is_refused(tmp_path):
    (tmp_path / "x.bicep").write_text(
        "resource s 'Microsoft.Storage/storageAccounts@2023-05-01' = {\n"
        "  // checkov:skip=CKV_AZURE_35\n"
        "  // checkov:skip=CKV_AZURE_59: a reason\n"
        "}\n",
        encoding="utf-8",
    )
    assert scan.skips_without_reason(tmp_path) == ["x.bicep:2: skip without a reason"]


def test_a_report_with_parsing_errors_fails_even_with_no_failed_check():
    report = {
        "check_type": "bicep",
        "summary": {"passed": 3, "failed": 0, "parsing_errors": 1, "resource_count": 3},
        "results": {"failed_checks": [], "parsing_errors": ["/infra/modules/entra.bicep"]},
    }
    with pytest.raises(scan.ScanFailed, match=r"parsing error: /infra/modules/entra\.bicep"):
        scan.evaluate(report)
