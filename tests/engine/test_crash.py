"""Crash safety: an apply killed with SIGKILL at any point, then applied again, converges with
nothing lost or duplicated, and the step it was killed in is reported.

The apply is a real process. It is killed where a test hook makes it sleep (after step N, or
inside the Nth primitive action: done in the backend, not yet journalled), or at a random
moment of a longer apply.
"""

from __future__ import annotations

import json
import random
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from enginekit import Cli, journal, start_amlctl, state_rows, wait_for, write_basic

# The basic manifest: 6 resources, 6 steps (the upload's step is create + sync: 7 actions).
EXPECTED_OBJECTS = [
    ("compute", "cpu", "story"), ("compute", "gpu", "story"), ("datastore", "default", None),
    ("datastore", "images", "story"), ("experiment", "train", "story"),
    ("upload", "digits", "story"), ("workspace", "story-ws", "story"),
]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped, so the lock holder's pid is really gone


def _release_stale_lock(project: Path, cli: Cli) -> None:
    """What a user does after a crash: apply names the stale lock; force-unlock releases it."""
    lock = project / ".amlctl" / "apply.lock"
    if not lock.exists():
        return
    refused = cli("apply", "--auto-approve")
    assert refused.code == 1 and "the lock is stale" in refused.stderr, refused
    lock_id = json.loads(lock.read_text())["id"]
    assert cli("force-unlock", lock_id).code == 0


def _reapply_and_check(project: Path, cli: Cli) -> str:
    """Apply again after a kill; check convergence; return the apply's output."""
    interrupted = journal(project, "begun")
    _release_stale_lock(project, cli)
    again = cli("apply", "--auto-approve")
    assert again.code == 0, again
    if interrupted:
        assert "A previous apply was interrupted during:" in again.stdout
        for address, step in interrupted:
            assert f"{step} {address}" in again.stdout
    assert journal(project, "begun") == []
    plan = cli("plan", "--detailed-exitcode")
    assert plan.code == 0 and "No changes." in plan.stdout, plan
    _check_state(project)
    return again.stdout


def _check_state(project: Path) -> None:
    rows = state_rows(project)
    assert [(kind, name, owner) for kind, name, owner, _ in rows] == EXPECTED_OBJECTS
    workspaces = list((project / ".amlctl" / "workspaces").iterdir())
    assert len(workspaces) == 1
    remote = workspaces[0] / "datastores" / "default" / "digits"
    local = project / "data"
    remote_files = sorted(p.relative_to(remote) for p in remote.rglob("*") if p.is_file())
    local_files = sorted(p.relative_to(local) for p in local.rglob("*") if p.is_file())
    assert remote_files == local_files  # nothing missing, no temp file left behind
    for relpath in local_files:
        assert (remote / relpath).read_bytes() == (local / relpath).read_bytes(), relpath


def _paused_apply(project: Path, hook: str, n: int) -> subprocess.Popen[bytes]:
    log = project / "killed-apply.log"
    proc = start_amlctl(project, log, "apply", "--auto-approve", **{hook: str(n)})
    wait_for(lambda: "paused" in log.read_text() or proc.poll() is not None,
             what=f"{hook}={n}")
    assert proc.poll() is None, log.read_text()
    return proc


@pytest.mark.parametrize("n", [1, 2, 5, 6])
def test_killed_between_steps(basic_project: Path, cli: Cli, n: int) -> None:
    _kill(_paused_apply(basic_project, "AMLCTL_PAUSE_AFTER_STEP", n))
    _reapply_and_check(basic_project, cli)


@pytest.mark.parametrize("n", [1, 3, 6, 7])
def test_killed_inside_a_step(basic_project: Path, cli: Cli, n: int) -> None:
    _kill(_paused_apply(basic_project, "AMLCTL_PAUSE_IN_STEP", n))
    interrupted = journal(basic_project, "begun")
    assert interrupted  # the action was done, its end never journalled
    output = _reapply_and_check(basic_project, cli)
    address, step = interrupted[0]
    assert f"A previous apply was interrupted during: {step} {address}" in output


def test_killed_during_a_change_then_converges(basic_project: Path, cli: Cli) -> None:
    assert cli("apply", "--auto-approve").code == 0
    manifest = basic_project / "amlctl.yaml"
    manifest.write_text(manifest.read_text().replace("Standard_NC4as_T4_v3",
                                                     "Standard_NC8as_T4_v3"))
    (basic_project / "data" / "part-1.csv").write_text("changed\n")
    # replace = delete then create: killed between the two, the cluster is simply missing
    _kill(_paused_apply(basic_project, "AMLCTL_PAUSE_IN_STEP", 1))
    _reapply_and_check(basic_project, cli)
    attrs = {name: json.loads(a) for kind, name, _, a in state_rows(basic_project)
             if kind == "compute"}
    assert attrs["gpu"]["vm_size"] == "Standard_NC8as_T4_v3"


def test_killed_destroy_converges(basic_project: Path, cli: Cli) -> None:
    assert cli("apply", "--auto-approve").code == 0
    log = basic_project / "killed-destroy.log"
    proc = start_amlctl(basic_project, log, "destroy", "--auto-approve",
                        AMLCTL_PAUSE_AFTER_STEP="2")
    wait_for(lambda: "paused" in log.read_text() or proc.poll() is not None, what="destroy")
    _kill(proc)
    _release_stale_lock(basic_project, cli)
    assert cli("destroy", "--auto-approve").code == 0
    assert "No changes." in cli("plan", "--destroy").stdout
    assert [(k, n) for k, n, _, _ in state_rows(basic_project)] == [
        ("datastore", "default"), ("upload", "digits"), ("workspace", "story-ws")]


@pytest.fixture
def big_project(project: Path) -> Path:
    """The basic manifest over a data folder that takes a while to upload."""
    write_basic(project)
    rng = random.Random(0)
    for i in range(150):
        (project / "data" / "many" / f"f{i:03}.bin").parent.mkdir(exist_ok=True)
        (project / "data" / "many" / f"f{i:03}.bin").write_bytes(rng.randbytes(8192))
    for i in range(2):
        (project / "data" / f"big{i}.bin").write_bytes(rng.randbytes(3 << 20))
    return project


@pytest.mark.parametrize("seed", [11, 33, 44, 2])
def test_killed_at_a_random_moment(big_project: Path, cli: Cli, seed: int) -> None:
    rng = random.Random(seed)
    lock = big_project / ".amlctl" / "apply.lock"
    proc = start_amlctl(big_project, big_project / "random-kill.log", "apply", "--auto-approve")
    # from the moment the apply holds the lock (then it plans and applies) to about its end
    wait_for(lambda: lock.exists() or proc.poll() is not None, what="the lock")
    time.sleep(rng.uniform(0.0, 0.3))
    if proc.poll() is None:
        _kill(proc)
    _reapply_and_check(big_project, cli)


def test_recovery_report_names_each_interrupted_step(basic_project: Path, cli: Cli) -> None:
    """Several steps in flight at the kill: each is reported, then marked recovered."""
    proc = _paused_apply(basic_project, "AMLCTL_PAUSE_IN_STEP", 2)
    log = basic_project / "killed-apply.log"
    # the executor runs 4 steps at once and this phase has more: all 4 pause inside their step
    wait_for(lambda: log.read_text().count(": paused in ") == 4, what="4 paused steps")
    _kill(proc)
    interrupted = journal(basic_project, "begun")
    assert len(interrupted) == 4
    _reapply_and_check(basic_project, cli)
    assert journal(basic_project, "recovered") == interrupted


def test_killed_after_submitting_a_run_submits_it_once(basic_project: Path, cli: Cli) -> None:
    (basic_project / "src").mkdir()
    (basic_project / "src" / "train.py").write_text("print('training')\n")
    manifest = basic_project / "amlctl.yaml"
    manifest.write_text(manifest.read_text() + RUN)
    # the 8th action is the submission (after 6 creates and the upload's sync)
    proc = _paused_apply(basic_project, "AMLCTL_PAUSE_IN_STEP", 8)
    assert "run.hello: paused in submit" in (basic_project / "killed-apply.log").read_text()
    _kill(proc)
    assert journal(basic_project, "begun") == [("run.hello", "submit")]
    _release_stale_lock(basic_project, cli)
    again = cli("apply", "--auto-approve")
    assert again.code == 0, again
    assert "interrupted during: submit run.hello" in again.stdout
    assert "Apply complete. Nothing to do." in again.stdout
    with sqlite3.connect(basic_project / ".amlctl" / "state.db") as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone() == (1,)


RUN = """\
runs:
  hello:
    experiment: train
    compute: cpu
    source_directory: src
    entry_script: train.py
    arguments: ["--data", {datastore: default, path: digits}]
"""
