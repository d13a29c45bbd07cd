"""Broken state on the local backend: damaged or misplaced databases, a read-only state
folder, a full disk. Each is one line saying what is wrong and what to do (exit 1, no
traceback); commands that only read work on a read-only state folder."""

from __future__ import annotations

import contextlib
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from enginekit import Cli, run_amlctl

RUN = """
experiments:
  train: {}
runs:
  hello:
    experiment: train
    compute: cpu
    source_directory: src
    entry_script: train.py
"""


def damage(path: Path, how: str) -> None:
    for suffix in ("-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
    if how == "truncated":
        data = path.read_bytes()[:100]
        path.write_bytes(data)
    elif how == "garbage":
        path.write_bytes(bytes(range(256)) * 32)
    else:
        path.unlink()
        path.mkdir()


def one_line_error(result: object, *needles: str) -> str:
    code, stderr = result.code, result.stderr  # type: ignore[attr-defined]
    assert code == 1, result
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize("how", ["truncated", "garbage", "folder"])
@pytest.mark.parametrize(("db", "what"), [("state.db", "local backend state"),
                                          ("engine.db", "engine history")])
def test_a_damaged_database_is_named_with_what_to_do(
    project: Path, cli: Cli, db: str, what: str, how: str
) -> None:
    assert cli("apply", "--auto-approve").code == 0
    damage(project / ".amlctl" / db, how)
    for command in ("status", "runs", "plan"):
        line = one_line_error(cli(command), f".amlctl/{db}")
        if how == "folder":
            assert f"is a folder where amlctl keeps its {what} database: move it away" in line
        else:
            assert f"the {what} database is damaged" in line and "move it aside" in line


@pytest.mark.parametrize("how", ["truncated", "garbage"])
@pytest.mark.parametrize("db", ["blobs.db", "hashcache.db"])
def test_a_damaged_cache_is_set_aside_and_rebuilt(
    project: Path, cli: Cli, db: str, how: str
) -> None:
    assert cli("apply", "--auto-approve").code == 0
    damage(project / ".amlctl" / db, how)
    result = cli("plan")
    assert result.code == 0 and "No changes." in result.stdout, result
    assert (project / ".amlctl" / f"{db}.damaged").is_file()


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """Make `folder` read-only for amlctl: a read-only bind mount as root (who ignores
    permissions), else permissions."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for path in modes:
            path.chmod(modes[path] & ~0o222)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    for command in (["mount", "--bind", str(folder), str(folder)],
                    ["mount", "-o", "remount,bind,ro", str(folder)]):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        assert done.returncode == 0, (
            f"as root, this test needs `mount` to make a read-only bind mount: {done.stderr}")
    try:
        yield
    finally:
        # lazy: a connection the failed command left open must not keep it mounted
        subprocess.run(["umount", "-l", str(folder)], check=True)


def test_reading_commands_work_on_a_read_only_state_folder(project: Path, cli: Cli) -> None:
    (project / "src").mkdir()
    (project / "src" / "train.py").write_text("print('hello from the run')\n")
    manifest = project / "amlctl.yaml"
    manifest.write_text(manifest.read_text().replace("experiments:\n  train: {}\n", RUN))
    assert cli("apply", "--auto-approve", "--wait").code == 0
    with read_only(project / ".amlctl"):
        with pytest.raises(OSError):
            (project / ".amlctl" / "probe").write_text("")  # it really is read-only
        status = cli("status")
        assert status.code == 0 and "Completed" in status.stdout, status
        runs = cli("runs")
        assert runs.code == 0 and "hello" in runs.stdout and "Completed" in runs.stdout, runs
        logs = cli("logs", "run.hello")
        assert logs.code == 0 and "hello from the run" in logs.stdout, logs
        (project / "data" / "part-0.csv").write_text("changed,content\n" * 20)
        plan = cli("plan")  # hashes the changed file, remembers nothing
        assert plan.code == 0 and "~ part-0.csv" in plan.stdout, plan
        manifest.write_text(manifest.read_text().replace("max_nodes: 2", "max_nodes: 3", 1))
        one_line_error(cli("apply", "--auto-approve"), "read-only")


def test_a_cache_from_before_the_no_op_memo_works_read_only(project: Path, cli: Cli) -> None:
    assert cli("apply", "--auto-approve").code == 0
    cache = project / ".amlctl" / "hashcache.db"
    with contextlib.closing(sqlite3.connect(cache)) as db:
        db.execute("DROP TABLE upload_no_op_memo")  # as a cache written by an older amlctl
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    with read_only(project / ".amlctl"):
        plan = cli("plan")
        assert plan.code == 0 and "No changes." in plan.stdout, plan
        (project / "data" / "part-0.csv").write_text("changed,content\n" * 20)
        plan = cli("plan")
        assert plan.code == 0 and "~ part-0.csv" in plan.stdout, plan


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB file system (tmpfs; needs root, as in CI's container)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"this test mounts a tiny tmpfs (needs root): {done.stderr}"
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def test_a_full_disk_is_said_plainly(project: Path, tiny_disk: Path) -> None:
    home = str(tiny_disk / "state")
    assert run_amlctl(project, "apply", "--auto-approve", AMLCTL_HOME=home).code == 0
    # Fill it up.
    with contextlib.suppress(OSError), open(tiny_disk / "filler", "wb") as filler:
        while True:
            filler.write(b"\0" * 65536)
            filler.flush()
    manifest = project / "amlctl.yaml"
    manifest.write_text(manifest.read_text().replace("max_nodes: 2", "max_nodes: 3", 1))
    for command in (("plan",), ("apply", "--auto-approve")):
        one_line_error(run_amlctl(project, *command, AMLCTL_HOME=home),
                       "no space left on the device", "free some space")
    (tiny_disk / "filler").unlink()
    assert run_amlctl(project, "apply", "--auto-approve", AMLCTL_HOME=home).code == 0
    shutil.rmtree(home)


def test_a_state_folder_that_is_a_file(project: Path, cli: Cli,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    (project / "home").write_text("not a folder")
    monkeypatch.setenv("AMLCTL_HOME", str(project / "home"))
    for command in ("status", "plan"):
        one_line_error(cli(command), "home: the state folder is a file, not a folder")


def test_only_errors_of_the_machine_are_worded_the_rest_stays_a_bug() -> None:
    from amlctl.statedb import describe_environment_error

    denied = describe_environment_error(PermissionError(13, "Permission denied", "s/lock"))
    assert denied is not None and denied.startswith("s/lock: permission denied")
    full = describe_environment_error(OSError(28, "No space left on device", "s/x"))
    assert full is not None and "no space left on the device" in full
    assert describe_environment_error(FileNotFoundError(2, "No such file", "x")) is None
    assert describe_environment_error(ValueError("a bug")) is None
