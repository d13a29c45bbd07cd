"""`amlctl status`: the same typed cluster status on every backend, and a stable `--json`
shape (docs/status-json.md), here on the local backend for real."""

from __future__ import annotations

import json
from pathlib import Path

from enginekit import Cli

NODES = {"idle": 0, "running": 0, "preparing": 0, "leaving": 0, "preempted": 0, "unusable": 0}


def test_status_json_has_the_documented_shape(basic_project: Path, cli: Cli) -> None:
    assert cli("apply", "--auto-approve").code == 0
    result = cli("status", "--json")
    assert result.code == 0, result.stderr
    body = json.loads(result.stdout)
    assert sorted(body) == ["computes", "runs"]
    assert sorted(body["computes"]) == ["cpu", "gpu"]
    assert body["computes"]["cpu"] == {
        "provisioning_state": "Succeeded", "allocation_state": "Steady",
        "current_nodes": 0, "target_nodes": 0, "nodes": NODES, "min_nodes": 0,
        "max_nodes": 2, "errors": [], "vm_size": "Standard_D2_v3",
        "vm_priority": "dedicated"}
    assert body["runs"] == []


def test_status_text_renders_nodes_by_state(basic_project: Path, cli: Cli) -> None:
    assert cli("apply", "--auto-approve").code == 0
    result = cli("status")
    assert result.code == 0, result.stderr
    assert ("  cpu: Steady, 0 nodes (idle 0, running 0, preparing 0, leaving 0, preempted 0, "
            "unusable 0), min 0 max 2") in result.stdout.splitlines()
