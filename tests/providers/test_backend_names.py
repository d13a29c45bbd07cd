"""Backends are named in one place (amlctl/providers/__init__.py): the manifest's `backend:`,
the JSON Schema and `--backend` all take their names from it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from amlctl.providers import BACKEND_NAMES

MANIFEST = """\
version: 1
name: names
backend: {backend}
workspace: {{name: names-ws, subscription_id: "0", resource_group: rg, location: westeurope}}
"""


def amlctl(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "amlctl", *args], cwd=cwd,
                          capture_output=True, text=True, timeout=60, check=False)


def test_the_registry_names_every_backend() -> None:
    assert BACKEND_NAMES == ("local", "azure", "azure-v2")


def test_the_manifest_and_schema_take_the_names(tmp_path: Path) -> None:
    for backend in BACKEND_NAMES:
        (tmp_path / "amlctl.yaml").write_text(MANIFEST.format(backend=backend))
        assert amlctl(tmp_path, "validate").returncode == 0, backend
    (tmp_path / "amlctl.yaml").write_text(MANIFEST.format(backend="azure-v3"))
    bad = amlctl(tmp_path, "validate")
    assert bad.returncode == 1
    assert ("amlctl.yaml:3:1: backend: must be 'local', 'azure' or 'azure-v2' (got 'azure-v3')"
            in bad.stderr)
    schema = json.loads(amlctl(tmp_path, "schema").stdout)
    enums = [alt["enum"] for alt in schema["properties"]["backend"]["anyOf"] if "enum" in alt]
    assert enums == [list(BACKEND_NAMES)]


def test_the_cli_option_takes_the_names(tmp_path: Path) -> None:
    (tmp_path / "amlctl.yaml").write_text(MANIFEST.format(backend="local"))
    assert amlctl(tmp_path, "--backend", "azure-v2", "validate").returncode == 0
    bad = amlctl(tmp_path, "--backend", "azure-v3", "validate")
    assert bad.returncode == 1
    assert "--backend 'azure-v3': expected one of local, azure, azure-v2" in bad.stderr
