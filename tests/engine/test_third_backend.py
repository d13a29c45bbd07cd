"""A backend outside amlctl's tree, added by one registration line, works everywhere at once.

The backend is a package written into tmp_path: the provider of docs/backends.md, built on
the shared per-kind dispatch (amlctl.providers.dispatch), keeping every object and run in one
JSON file. It is
registered with one entry in `amlctl.providers.BACKENDS` (undone after the test) and nothing
of amlctl is edited; the manifest's `backend:`, the JSON Schema, `--backend` and the real
engine (plan, apply, prune, destroy through the in-process CLI) all take it from there.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from enginekit import Cli

import amlctl.providers
from amlctl.providers.dispatch import HandlerProvider
from amlctl.providers.local.provider import LocalProvider

DOC = Path(__file__).resolve().parents[2] / "docs" / "backends.md"


def backend_source() -> str:
    """The backend of docs/backends.md ("A small backend"), so the documented one is tested."""
    section = DOC.read_text(encoding="utf-8").split("## A small backend", 1)[1]
    return section.split("```python\n", 1)[1].split("\n```", 1)[0] + "\n"

MANIFEST = """\
version: 1
name: third
backend: memory
workspace:
  name: third-ws
  subscription_id: "00000000-0000-0000-0000-000000000000"
  resource_group: third-rg
  location: westeurope
computes:
  cpu:
    vm_size: Standard_D2_v3
    max_nodes: {max_nodes}
{extra}datastores:
  scratch:
    type: azure_blob
    account_name: thirdacct
    container_name: scratch
uploads:
  data:
    datastore: default
    src_dir: data
    target_path: data
experiments:
  train: {{}}
runs:
  train:
    experiment: train
    compute: cpu
    source_directory: src
    entry_script: train.py
    distribution: {{type: multi_worker, node_count: 1, worker_count: 2}}
    environment:
      env_vars: {{MODE: fast}}
"""
GPU = """\
  gpu:
    vm_size: Standard_NC4as_T4_v3
    max_nodes: 1
"""


@pytest.fixture
def memory_backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The backend package in tmp_path/ext, registered as `memory` by one entry."""
    package = tmp_path / "ext" / "memory_backend"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "provider.py").write_text(backend_source())
    monkeypatch.syspath_prepend(str(tmp_path / "ext"))
    # the one registration line (undone after the test)
    monkeypatch.setitem(amlctl.providers.BACKENDS, "memory",
                        "memory_backend.provider:MemoryProvider")
    return package


def write(project: Path, max_nodes: int = 2, gpu: bool = False) -> None:
    (project / "amlctl.yaml").write_text(MANIFEST.format(max_nodes=max_nodes,
                                                         extra=GPU if gpu else ""))
    (project / "data").mkdir(exist_ok=True)
    (project / "data" / "part.csv").write_text("1,2\n")
    (project / "src").mkdir(exist_ok=True)
    (project / "src" / "train.py").write_text("print('train')\n")


def stored(project: Path) -> dict[str, Any]:
    return json.loads((project / ".amlctl" / "memory.json").read_text())


def test_a_registered_backend_is_planned_and_applied_by_the_real_engine(
        memory_backend: Path, project: Path, cli: Cli) -> None:
    write(project, gpu=True)
    assert cli("validate").code == 0
    first = cli("apply", "--auto-approve")
    assert first.code == 0, first.stderr
    objects = stored(project)["objects"]
    assert set(objects) == {"workspace", "compute", "datastore", "experiment", "upload"}
    assert set(objects["compute"]) == {"cpu", "gpu"}
    assert objects["compute"]["cpu"]["owner"] == "third"
    assert (project / ".amlctl" / "files" / "default" / "data" / "part.csv").read_text() \
        == "1,2\n"
    (run,) = stored(project)["runs"]
    assert run["request"] == {"entry_script": "train.py", "workers": 2,
                              "distribution": "multi_worker", "compute_max_nodes": 2,
                              "env": {"MODE": "fast"}}

    again = cli("plan", "--detailed-exitcode")
    assert again.code == 0, again.stdout + again.stderr  # 0: nothing to change

    # an in-place update, a prune of what left the manifest, and a run resubmitted
    write(project, max_nodes=4)
    changed = cli("apply", "--auto-approve")
    assert changed.code == 0, changed.stderr
    objects = stored(project)["objects"]
    assert set(objects["compute"]) == {"cpu"}
    assert objects["compute"]["cpu"]["attrs"]["max_nodes"] == 4
    # the run's definition did not change (its compute's size is not part of it): not resubmitted
    assert len(stored(project)["runs"]) == 1

    assert cli("destroy", "--auto-approve").code == 0
    assert stored(project)["objects"].get("compute") == {}


def test_the_manifest_cli_and_schema_name_a_registered_backend(
        memory_backend: Path, project: Path, cli: Cli) -> None:
    write(project)
    (project / "amlctl.yaml").write_text(
        (project / "amlctl.yaml").read_text().replace("backend: memory", "backend: local"))
    assert cli("--backend", "memory", "validate").code == 0
    schema = json.loads(cli("schema").stdout)
    enums = [alt["enum"] for alt in schema["properties"]["backend"]["anyOf"] if "enum" in alt]
    assert enums == [["local", "azure", "azure-v2", "memory"]]
    (project / "amlctl.yaml").write_text(
        (project / "amlctl.yaml").read_text().replace("backend: local", "backend: memry"))
    bad = cli("validate")
    assert bad.code == 1
    assert "must be 'local', 'azure', 'azure-v2' or 'memory' (got 'memry')" in bad.stderr


def test_unregistered_the_backend_is_unknown(project: Path, cli: Cli) -> None:
    write(project)
    bad = cli("validate")
    assert bad.code == 1
    assert "must be 'local', 'azure' or 'azure-v2' (got 'memory')" in bad.stderr


def test_backends_inherit_the_one_dispatch() -> None:
    """No backend writes its own address parsing or kind dispatch: the object operations
    are the shared ones, and kinds are handled by the handler table."""
    from amlctl.providers.azure.provider import AzureProvider
    from amlctl.providers.azure_v2.provider import AzureV2Provider

    generic = ("create", "update", "delete", "adopt", "updatable_fields", "preflight",
               "create_notes")
    for provider in (LocalProvider, AzureProvider, AzureV2Provider):
        assert issubclass(provider, HandlerProvider)
        overridden = [name for name in generic
                      for cls in provider.__mro__[:provider.__mro__.index(HandlerProvider)]
                      if name in vars(cls)]
        assert overridden == [], (provider.__name__, overridden)


def test_a_kind_without_a_handler_is_refused_by_name(tmp_path: Path) -> None:
    from amlctl.errors import ProviderError

    class NoExperiments(LocalProvider):
        def make_handlers(self) -> dict[str, Any]:
            table = dict(super().make_handlers())
            del table["experiment"]
            return table

    provider = NoExperiments({"name": "w", "subscription_id": "0", "resource_group": "g",
                              "location": "westeurope"}, "s", tmp_path)
    try:
        provider.create("workspace", {"name": "w", "subscription_id": "0",
                                      "resource_group": "g", "location": "westeurope",
                                      "tags": {}}, {})
        with pytest.raises(ProviderError,
                           match="local backend cannot create objects of kind 'experiment'"):
            provider.create("experiment.train", {"tags": {}}, {})
        assert provider.updatable_fields("experiment") == frozenset()
        assert set(provider.read_all()) == {"workspace", "datastore.default"}
    finally:
        provider.close()
