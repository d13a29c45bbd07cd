"""Crash safety: an apply killed with SIGKILL or SIGTERM at any point, then applied again,
converges with nothing lost or duplicated, and the step it was killed in is reported. No kill
ever leaves a lock behind: the next apply never needs force-unlock.

The apply is a real process. It is killed where its view pauses it (tests/pausing.py wraps
the command line's view: after step N, or inside the Nth primitive action: done in the
backend, not yet journalled), or at random moments of longer applies and destroys (only kills
that land while the process runs count).
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
from enginekit import (
    Cli,
    journal,
    start_amlctl,
    start_paused_amlctl,
    state_rows,
    wait_for,
    write_basic,
)

# The basic manifest: 6 resources, 6 steps (the upload's step is create + sync: 7 actions).
EXPECTED_OBJECTS = [
    ("compute", "cpu", "story"), ("compute", "gpu", "story"), ("datastore", "default", None),
    ("datastore", "images", "story"), ("experiment", "train", "story"),
    ("upload", "digits", "story"), ("workspace", "story-ws", "story"),
]


def _kill(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait()  # reaped, so the lock holder's pid is really gone


def _reapply_and_check(project: Path, cli: Cli) -> str:
    """Apply again after a kill (no force-unlock first); check convergence; return the
    apply's output."""
    interrupted = journal(project, "begun")
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


def _paused_apply(project: Path, where: str, n: int) -> subprocess.Popen[bytes]:
    log = project / "killed-apply.log"
    proc = start_paused_amlctl(project, log, where, n, "apply", "--auto-approve")
    wait_for(lambda: "paused" in log.read_text() or proc.poll() is not None,
             what=f"a pause {where} {n}")
    assert proc.poll() is None, log.read_text()
    return proc


@pytest.mark.parametrize("n", [1, 2, 5, 6])
def test_killed_between_steps(basic_project: Path, cli: Cli, n: int) -> None:
    _kill(_paused_apply(basic_project, "after-step", n))
    _reapply_and_check(basic_project, cli)


@pytest.mark.parametrize("n", [1, 3, 6, 7])
def test_killed_inside_a_step(basic_project: Path, cli: Cli, n: int) -> None:
    _kill(_paused_apply(basic_project, "in-step", n))
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
    _kill(_paused_apply(basic_project, "in-step", 1))
    _reapply_and_check(basic_project, cli)
    attrs = {name: json.loads(a) for kind, name, _, a in state_rows(basic_project)
             if kind == "compute"}
    assert attrs["gpu"]["vm_size"] == "Standard_NC8as_T4_v3"


def test_killed_destroy_converges(basic_project: Path, cli: Cli) -> None:
    assert cli("apply", "--auto-approve").code == 0
    log = basic_project / "killed-destroy.log"
    proc = start_paused_amlctl(basic_project, log, "after-step", 2, "destroy", "--auto-approve")
    wait_for(lambda: "paused" in log.read_text() or proc.poll() is not None, what="destroy")
    _kill(proc)
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


KILLS_LANDED = 30  # kills that must land while an apply or destroy runs


def _holds_lock(project: Path, proc: subprocess.Popen[bytes]) -> bool:
    """True once `proc` took the lock (the record names it: a killed holder's record stays)."""
    try:
        return json.loads((project / ".amlctl" / "apply.lock").read_text())["pid"] == proc.pid
    except (OSError, ValueError, KeyError):
        return False


def _vary(project: Path, round_: int) -> None:
    """Give the next apply work to do: a scale change and changed upload files."""
    manifest = project / "amlctl.yaml"
    manifest.write_text(manifest.read_text().replace(
        f"max_nodes: {2 + (round_ + 1) % 2}\n", f"max_nodes: {2 + round_ % 2}\n", 1))
    for i in range(3):
        (project / "data" / f"part-{i}.csv").write_text(f"{round_},{i}\n" * 50)


def test_killed_at_random_moments(big_project: Path, cli: Cli) -> None:
    """SIGKILL and SIGTERM at random moments of applies and destroys, counting only kills
    that land while the process runs (its exit status is the signal). After each, a plain
    apply converges without force-unlock."""
    rng = random.Random(20261129)
    assert cli("apply", "--auto-approve").code == 0
    started = time.monotonic()
    assert cli("destroy", "--auto-approve").code == 0  # one destroy and one apply: their length
    assert cli("apply", "--auto-approve").code == 0
    span = (time.monotonic() - started) / 2
    landed = {signal.SIGKILL: 0, signal.SIGTERM: 0}
    attempts = 0
    while sum(landed.values()) < KILLS_LANDED:
        attempts += 1
        assert attempts <= 4 * KILLS_LANDED, f"too few kills landed: {landed}"
        command = "destroy" if attempts % 3 == 0 else "apply"
        _vary(big_project, attempts)
        log = big_project / f"kill-{attempts}.log"
        proc = start_amlctl(big_project, log, command, "--auto-approve")
        # from the moment it holds the lock (then it recovers, plans and applies) to its end
        wait_for(lambda p=proc: _holds_lock(big_project, p) or p.poll() is not None,
                 what="the lock")
        time.sleep(rng.uniform(0.0, span))
        sig = signal.SIGKILL if attempts % 2 else signal.SIGTERM
        proc.send_signal(sig)
        code = proc.wait()
        output = log.read_text()
        assert "locked" not in output, output  # no earlier kill left a lock behind
        finished = "Apply complete" in output or "Destroy complete" in output
        if code == -sig and not finished:
            landed[sig] += 1
            span *= 1.1  # reach later moments too
        else:
            if code != -sig:
                assert code == 0, output  # it exited before the signal came: not counted
            # the runs are shorter than measured (a loaded machine got quieter): aim earlier
            span *= 0.7
        if attempts % 4 == 0:  # converge now and then (every kill is recovered by the next)
            _reapply_and_check(big_project, cli)
    _reapply_and_check(big_project, cli)
    assert min(landed.values()) >= KILLS_LANDED // 3, landed
    print(f"kills landed mid-run: {landed[signal.SIGKILL]} SIGKILL, {landed[signal.SIGTERM]} "
          f"SIGTERM, of {attempts} attempts")


def test_recovery_report_names_each_interrupted_step(basic_project: Path, cli: Cli) -> None:
    """Several steps in flight at the kill: each is reported, then marked recovered."""
    proc = _paused_apply(basic_project, "in-step", 2)
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
    proc = _paused_apply(basic_project, "in-step", 8)
    assert "run.hello: paused in submit" in (basic_project / "killed-apply.log").read_text()
    _kill(proc)
    assert journal(basic_project, "begun") == [("run.hello", "submit")]
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
