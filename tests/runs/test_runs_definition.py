"""The run definition a provider receives is typed data built from the manifest by the engine,
with no secret value in it: a secret environment variable is listed by name (value None) and
its value travels only in the request's `secrets`."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlctl.engine.desired import desired_state, run_request
from amlctl.manifest.loader import load_manifest
from amlctl.providers.base import ComputeRef
from amlctl.runs.definition import DataInputRef, RunDistribution

CANARY = "Canary-run-4d1!"
MANIFEST = """\
version: 1
name: defs
workspace: {name: defs-ws, subscription_id: "0", resource_group: rg, location: westeurope}
computes:
  cpu: {vm_size: Standard_D2_v3, vm_priority: lowpriority, min_nodes: 1, max_nodes: 3}
experiments:
  train: {}
runs:
  train:
    experiment: train
    compute: cpu
    source_directory: src
    entry_script: train.py
    arguments:
      --data: {datastore: default, path: digits, mode: download}
      --steps: 5
      --verbose: null
    inputs:
      labels: {datastore: default, path: labels}
    distribution: {type: parameter_server, node_count: 2, worker_count: 3,
                   parameter_server_count: 1}
    environment:
      pip: [numpy]
      env_vars:
        MODE: fast
        TOKEN: "{{ secret_env('RUN_TOKEN') }}"
    tags: {team: vision}
"""


def test_the_engine_hands_a_typed_definition_without_secret_values(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUN_TOKEN", CANARY)
    (tmp_path / "amlctl.yaml").write_text(MANIFEST)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('train')\n")
    loaded = load_manifest(tmp_path / "amlctl.yaml")
    want = desired_state(loaded)["run.train"]

    request = run_request(loaded, want, supersedes="earlier-run")

    run = request.run
    assert (run.experiment, run.compute, run.entry_script) == ("train", "cpu", "train.py")
    assert run.arguments == {"--data": DataInputRef("default", "digits", "download"),
                             "--steps": 5, "--verbose": None}
    assert run.inputs == {"labels": DataInputRef("default", "labels", "mount")}
    assert run.distribution == RunDistribution("parameter_server", 2, 3, 1, 1)
    assert run.environment.pip == ("numpy",)
    assert run.environment.env_vars == {"MODE": "fast", "TOKEN": None}
    assert run.environment.values(request.secrets) == {"MODE": "fast", "TOKEN": CANARY}
    assert run.tags == {"team": "vision"}
    assert request.compute == ComputeRef("cpu", "Standard_D2_v3", "lowpriority", 1, 3)
    assert request.source_dir == tmp_path / "src"
    assert (request.spec_hash, request.supersedes) == (want.attrs["spec_hash"], "earlier-run")
    assert request.secrets == {"TOKEN": CANARY}
    assert CANARY not in repr(run) and CANARY not in repr(request)
