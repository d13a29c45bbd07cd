"""Helpers shared by the engine tests: `amlctl` in-process or as a subprocess, and a small
manifest with one object of each kind the engine manages."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from amlctl.cli import main

BASIC_MANIFEST = """\
version: 1
name: story
workspace:
  name: story-ws
  subscription_id: "00000000-0000-0000-0000-000000000000"
  resource_group: story-rg
  location: westeurope
computes:
  cpu:
    vm_size: Standard_D2_v3
    max_nodes: {max_nodes}
  gpu:
    vm_size: Standard_NC4as_T4_v3
    max_nodes: 2
datastores:
  images:
    type: azure_blob
    account_name: storyacct
    container_name: images
uploads:
  digits:
    datastore: default
    src_dir: data
    target_path: digits
experiments:
  train: {{}}
"""


@dataclass(frozen=True)
class CliResult:
    """What one `amlctl` invocation did."""

    code: int
    stdout: str
    stderr: str


Cli = Callable[..., CliResult]


def write_basic(folder: Path, max_nodes: int = 2) -> None:
    """BASIC_MANIFEST as `folder/amlctl.yaml`, and its data folder."""
    (folder / "amlctl.yaml").write_text(BASIC_MANIFEST.format(max_nodes=max_nodes))
    (folder / "data").mkdir(exist_ok=True)
    for i in range(3):
        (folder / "data" / f"part-{i}.csv").write_text(f"{i},{i * i}\n" * 50)


def in_process(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """A function running `amlctl ARGS...` in-process, with no terminal on stdin."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "stdin", io.StringIO(""))
        try:
            main(list(args))
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else (0 if done.code is None else 1)
        else:
            code = 0
        out, err = capsys.readouterr()
        return CliResult(code, out, err)

    return run


def amlctl_command(*args: str) -> list[str]:
    """The command line of a real `amlctl` process with this interpreter."""
    return [sys.executable, "-m", "amlctl", *args]


def subprocess_env(**extra: str) -> dict[str, str]:
    """The environment of an `amlctl` subprocess: no AMLCTL_* leaking in, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLCTL_")}
    env.update(extra)
    return env


def run_amlctl(cwd: Path, *args: str, timeout: float = 60, **env: str) -> CliResult:
    """Run `amlctl ARGS...` as a subprocess in `cwd`, without a terminal, and wait for it."""
    done = subprocess.run(amlctl_command(*args), cwd=cwd, env=subprocess_env(**env),
                          stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout, check=False)
    return CliResult(done.returncode, done.stdout, done.stderr)


def start_amlctl(cwd: Path, log: Path, *args: str, **env: str) -> subprocess.Popen[bytes]:
    """Start `amlctl ARGS...` in `cwd`, its stdout and stderr going to `log` (no pipe to fill)."""
    with open(log, "wb") as out:
        return subprocess.Popen(amlctl_command(*args), cwd=cwd, env=subprocess_env(**env),
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)


PAUSING = Path(__file__).resolve().parents[1] / "pausing.py"


def start_paused_amlctl(cwd: Path, log: Path, where: str, n: int, *args: str
                        ) -> subprocess.Popen[bytes]:
    """Start `amlctl ARGS...` as `start_amlctl` does, its view pausing it at the Nth event
    of `where` ("in-step" or "after-step", see tests/pausing.py) until it is killed."""
    with open(log, "wb") as out:
        return subprocess.Popen([sys.executable, str(PAUSING), where, str(n), *args], cwd=cwd,
                                env=subprocess_env(), stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)


def wait_for(condition: Callable[[], object], timeout: float = 30, what: str = "") -> None:
    """Poll `condition` until it is true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.02)


def journal(folder: Path, state: str) -> list[tuple[str, str]]:
    """(address, step) of journal entries in `state` (begun, done, failed, recovered)."""
    path = folder / ".amlctl" / "engine.db"
    if not path.exists():
        return []
    with sqlite3.connect(path, timeout=10) as conn:
        try:
            return conn.execute("SELECT address, step FROM journal WHERE state=? ORDER BY id",
                                (state,)).fetchall()
        except sqlite3.OperationalError:  # the table is not made yet
            return []


def state_rows(folder: Path) -> list[tuple[str, str, str | None, str]]:
    """(kind, name, owner, attrs) of every object of the local backend, workspaces included."""
    with sqlite3.connect(folder / ".amlctl" / "state.db", timeout=10) as conn:
        rows = conn.execute(
            "SELECT 'workspace', name, owner, location FROM workspaces UNION ALL "
            "SELECT kind, name, owner, attrs FROM objects ORDER BY 1, 2").fetchall()
    return [tuple(r) for r in rows]
