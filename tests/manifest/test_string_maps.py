"""Tags and env_vars take numbers and booleans, as YAML writes them, converted to strings."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlctl.errors import ManifestError
from amlctl.manifest.loader import load_manifest

MANIFEST = """\
version: 1
name: maps
workspace:
  name: maps-ws
  subscription_id: "00000000-0000-0000-0000-000000000000"
  resource_group: rg
  location: westeurope
  tags: {build: 123, release: true, ratio: 0.5, team: vision, commit: "{{ vars.commit }}"}
vars: {commit: 4711}
computes:
  cpu:
    vm_size: Standard_D2_v3
    max_nodes: 1
    tags: {nightly: false}
experiments:
  train: {tags: {attempt: 2}}
runs:
  r:
    experiment: train
    compute: cpu
    source_directory: src
    entry_script: train.py
    environment: {env_vars: {TF_CPP_MIN_LOG_LEVEL: 2, DEBUG: false}}
    tags: {seed: 42}
"""


def test_numbers_and_booleans_in_string_maps_become_strings(project: Path) -> None:
    (project / "amlctl.yaml").write_text(MANIFEST)
    m = load_manifest(project / "amlctl.yaml").manifest
    assert m.workspace.tags == {"build": "123", "release": "true", "ratio": "0.5",
                                "team": "vision", "commit": "4711"}
    assert m.computes["cpu"].tags == {"nightly": "false"}
    assert m.experiments["train"].tags == {"attempt": "2"}
    assert m.runs["r"].tags == {"seed": "42"}
    assert m.runs["r"].environment.env_vars == {"TF_CPP_MIN_LOG_LEVEL": "2", "DEBUG": "false"}


def test_a_map_or_list_as_a_tag_value_is_still_an_error(project: Path) -> None:
    (project / "amlctl.yaml").write_text(MANIFEST.replace("build: 123", "build: [1, 2]"))
    with pytest.raises(ManifestError) as err:
        load_manifest(project / "amlctl.yaml")
    assert "amlctl.yaml:8:10: " in str(err.value)
    assert "workspace.tags.build" in str(err.value)


def test_the_plan_shows_the_converted_values(project: Path, amlctl) -> None:
    (project / "amlctl.yaml").write_text(MANIFEST)
    result = amlctl("plan")
    assert result.code == 0, result.stderr
    assert '+ tags: {"build": "123", "commit": "4711", "ratio": "0.5", "release": "true", ' \
           '"team": "vision"}' in result.stdout
    assert '+ tags: {"nightly": "false"}' in result.stdout
