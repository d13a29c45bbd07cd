"""The quickstart for real: distributed TensorFlow (1 ps + 2 workers) on the local backend.

Slow (TensorFlow imports take seconds per process) but kept in CI, where `make test`
installs tensorflow-cpu. Without TensorFlow these tests fail, saying how to install it.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def tensorflow_installed() -> None:
    if importlib.util.find_spec("tensorflow") is None:
        pytest.fail("tensorflow is not installed: install the demo extra with "
                    "pip install -e '.[demo]' (make test does it)", pytrace=False)


def amlctl(folder: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLCTL_")}
    return subprocess.run([sys.executable, "-m", "amlctl", *args], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_quickstart_trains_parameter_server_model(tmp_path: Path) -> None:
    folder = tmp_path / "mnist"
    shutil.copytree(EXAMPLE, folder, ignore=shutil.ignore_patterns(".amlctl"))

    applied = amlctl(folder, "--var", "train_steps=200", "apply", "--auto-approve", "--wait")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    assert "Completed" in applied.stdout
    # Every role logged, prefixed; worker 0 (the chief) evaluated and checkpointed.
    for role in ("[ps:0]", "[worker:0]", "[worker:1]"):
        assert role in applied.stdout
    accuracy = [line for line in applied.stdout.splitlines() if "accuracy=" in line]
    assert accuracy and float(accuracy[-1].rsplit("=", 1)[1]) >= 0.9
    checkpoints = list((folder / ".amlctl").glob("workspaces/*/runs/*/outputs/*.index"))
    assert len(checkpoints) == 1
    # The example quiets TensorFlow's start-up banners, which hid the run's own lines...
    for banner in ("oneDNN custom operations", "absl::InitializeLog", "cpu_feature_guard"):
        assert banner not in applied.stdout + applied.stderr
    # ... and `logs` shows everything the roles printed, unfiltered.
    logs = amlctl(folder, "logs", "run.tf-mnist")
    assert logs.returncode == 0, logs.stderr
    assert accuracy[-1].split("] ", 1)[-1] in logs.stdout
    printed = [p for p in (folder / ".amlctl").glob("workspaces/*/runs/*/logs/*") if p.is_file()]
    assert printed, "no role log files"
    assert len(logs.stdout.splitlines()) >= sum(
        len(p.read_text(errors="replace").splitlines()) for p in printed)

    # Same manifest, same code: nothing to do, no second run.
    again = amlctl(folder, "--var", "train_steps=200", "plan", "--detailed-exitcode")
    assert again.returncode == 0, again.stdout + again.stderr
    runs = amlctl(folder, "runs", "--json")
    assert runs.stdout.count('"status": "Completed"') == 1

    # Worker 0 logged its metrics with MLflow into the run's own tracking store.
    shown = amlctl(folder, "metrics", "run.tf-mnist", "--json", "--plot", "metrics.png")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    metrics = json.loads(shown.stdout)["metrics"]
    assert set(metrics) == {"loss", "accuracy"}
    loss = [value for _, value in metrics["loss"]["points"]]
    steps = [step for step, _ in metrics["loss"]["points"]]
    assert len(set(steps)) >= 3 and steps == sorted(steps)
    third = len(loss) // 3
    assert sum(loss[-third:]) < sum(loss[:third]) and loss[-1] < loss[0] / 4
    assert metrics["accuracy"]["last"] >= 0.9
    assert metrics["accuracy"]["last_step"] >= 200
    assert f"accuracy={metrics['accuracy']['last']:.4f}" in applied.stdout  # same as printed
    # The picture: a PNG of one 600x260 px panel per metric (read from its header here).
    picture = (folder / "metrics.png").read_bytes()
    assert picture[:8] == b"\x89PNG\r\n\x1a\n" and len(picture) > 20_000
    assert struct.unpack(">II", picture[16:24]) == (600, 520)
    assert "metrics.png (600x520 px)" in shown.stderr

    # runs and status show the latest values.
    listed = json.loads(amlctl(folder, "runs", "--json").stdout)
    assert listed[0]["metrics"] == {"accuracy": metrics["accuracy"]["last"],
                                    "loss": metrics["loss"]["last"]}
    table = amlctl(folder, "metrics", "run.tf-mnist")
    assert table.stdout.splitlines()[0].split()[0] == "METRIC"
