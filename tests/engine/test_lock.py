"""One apply per workspace at a time: the lock lets one through and names its holder to others.

The first apply is a real process paused after its first step (its view pauses it, see
tests/pausing.py), so it holds the lock for as long as the test needs; the others are real
processes too. The local lock is a kernel lock: it dies with its holder, so a killed apply
never needs force-unlock.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from enginekit import Cli, journal, run_amlctl, start_paused_amlctl, state_rows, wait_for

from amlctl.engine.lock import kernel_lock, read_lock


def _lock_file(project: Path) -> Path:
    return project / ".amlctl" / "apply.lock"


def _holder(project: Path) -> dict[str, Any]:
    return json.loads(_lock_file(project).read_text())


def _locked(project: Path) -> bool:
    return read_lock(project / ".amlctl") is not None


@pytest.fixture
def paused_apply(basic_project: Path) -> Iterator[subprocess.Popen[bytes]]:
    """An `amlctl apply` holding the workspace lock, asleep after creating the workspace."""
    log = basic_project / "first-apply.log"
    proc = start_paused_amlctl(basic_project, log, "after-step", 1, "apply", "--auto-approve")
    wait_for(lambda: journal(basic_project, "done") or proc.poll() is not None,
             what="the first apply's first step")
    assert proc.poll() is None, log.read_text()
    yield proc
    if proc.poll() is None:
        proc.kill()
        proc.wait()


def test_second_apply_fails_fast_naming_the_holder(
        basic_project: Path, paused_apply: subprocess.Popen[bytes], cli: Cli) -> None:
    before = state_rows(basic_project)
    holder = _holder(basic_project)
    started = time.monotonic()
    second = run_amlctl(basic_project, "apply", "--auto-approve")
    assert second.code == 1, second
    assert time.monotonic() - started < 10  # fails at once (the time is the interpreter's)
    assert (f"the workspace is locked: lock {holder['id']} held by amlctl apply "
            f"(pid {paused_apply.pid} on {socket.gethostname()}, since ") in second.stderr
    assert "It is released when that process ends" in second.stderr
    destroy = run_amlctl(basic_project, "destroy", "--auto-approve")
    assert destroy.code == 1 and "the workspace is locked" in destroy.stderr
    adopt = cli("import", "compute.cpu")  # import writes too
    assert adopt.code == 1 and "the workspace is locked" in adopt.stderr
    # nothing was changed by the refused commands; the holder still owns the lock
    assert state_rows(basic_project) == before
    assert journal(basic_project, "done") == [("workspace", "create")]
    assert _holder(basic_project) == holder
    # reading needs no lock: plan still works while an apply runs
    assert cli("plan").code == 0


def test_lock_timeout_waits_then_gives_up(
        basic_project: Path, paused_apply: subprocess.Popen[bytes]) -> None:
    started = time.monotonic()
    second = run_amlctl(basic_project, "apply", "--auto-approve", "--lock-timeout", "1.5")
    assert second.code == 1 and "the workspace is locked" in second.stderr
    assert time.monotonic() - started >= 1.5


def test_lock_timeout_gets_the_lock_once_released(basic_project: Path) -> None:
    held = threading.Event()

    def hold() -> None:
        with kernel_lock(basic_project / ".amlctl", "a test holder"):
            held.set()
            time.sleep(1.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait(10)
    started = time.monotonic()
    second = run_amlctl(basic_project, "apply", "--auto-approve", "--lock-timeout", "30")
    holder.join()
    assert second.code == 0, second
    assert "Apply complete. Resources: 6 added" in second.stdout
    assert time.monotonic() - started < 30
    assert not _locked(basic_project)


def test_lock_released_after_apply_even_when_it_fails(basic_project: Path, cli: Cli) -> None:
    assert cli("apply").code == 1  # refused: no terminal to confirm on
    assert not _locked(basic_project)
    assert _lock_file(basic_project).read_text() == ""  # the holder record goes with it
    assert cli("apply", "--auto-approve").code == 0
    assert not _locked(basic_project)


def test_force_unlock_refuses_a_live_holder(
        basic_project: Path, paused_apply: subprocess.Popen[bytes], cli: Cli) -> None:
    holder = _holder(basic_project)
    wrong = cli("force-unlock", "0000deadbeef")
    assert wrong.code == 1
    assert f"lock id '0000deadbeef' does not match the current lock '{holder['id']}'" \
        in wrong.stderr
    live = cli("force-unlock", holder["id"])
    assert live.code == 1
    assert "is held by a running process" in live.stderr
    assert "released the moment its holder exits" in live.stderr
    assert _locked(basic_project) and _holder(basic_project) == holder


def test_a_killed_holder_never_blocks_the_next_apply(
        basic_project: Path, paused_apply: subprocess.Popen[bytes], cli: Cli) -> None:
    holder = _holder(basic_project)
    paused_apply.kill()
    paused_apply.wait()
    assert not _locked(basic_project)  # the kernel released it with the process

    # force-unlock still answers for the id the user saw: only a record is left to clear
    right = cli("force-unlock", holder["id"])
    assert right.code == 0, right
    assert (f"Removed lock {holder['id']} (held by amlctl apply, pid {paused_apply.pid} on "
            f"{socket.gethostname()}): its holder had already exited") in right.stdout
    again = cli("force-unlock", holder["id"])
    assert again.code == 1 and "the workspace is not locked" in again.stderr

    after_crash = cli("apply", "--auto-approve")
    assert after_crash.code == 0, after_crash
    assert "No changes." in cli("plan").stdout
