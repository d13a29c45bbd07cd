"""Submitting a local run and controlling it from outside: recovery, cancel, waiting.

A run's folder is `<home>/runs/<run_id>/`:

    snapshot/   copy of source_directory (cwd of every task; `outputs` links to ../outputs)
    outputs/    what the run produces (AZ_BATCHAI_OUTPUT_<ID> folders inside it)
    logs/       one log per task: <role>_<index>.log
    inputs/     private copies of download-mode inputs
    tmp/        per-node and shared temp folders
    system/     supervisor.log, environment.log
    tasks.json  placement, ports and pids of the tasks once started

`submit` records the run as NotStarted and starts its supervisor detached, so the run goes on
after the CLI exits or is killed. If the CLI dies between the two, `ensure_supervised` (called
when an interrupted apply is recovered) finishes the job.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

from amlctl.providers.local import pool
from amlctl.providers.local.runs import procs, status
from amlctl.providers.local.runs.spec import RunSpec
from amlctl.providers.local.runs.supervisor import MARKER, MODULE, SECRETS_FILE, TASKS_FILE
from amlctl.providers.local.store import RunRow, Store, WorkspaceRow
from amlctl.runs.errors import RunError
from amlctl.runs.snapshot import copy_snapshot

WAIT_POLL_SECONDS = 0.1
ORPHAN_STOP_GRACE_SECONDS = 5.0


def new_run_id(experiment: str) -> str:
    """A run id shaped like Azure ML's: `<experiment>_<unix time>_<8 hex>`."""
    return f"{experiment}_{int(time.time())}_{secrets.token_hex(4)}"


def submit(store: Store, workspace: WorkspaceRow, home: Path, spec: RunSpec, source_dir: Path,
           *, spec_hash: str, owner: str | None = None, start: bool = True) -> RunRow:
    """Snapshot `source_dir`, record the run (NotStarted) and start its supervisor.

    `spec` comes from `build_spec` (its run id and folders are filled in here); `spec_hash`
    is the run's identity (`identity.spec_hash`), stored for the engine's lookups; `owner` is
    the stack tag. `start=False` only records the run, for a caller that journals the run id
    first and then calls `ensure_supervised`. Returns the recorded run.
    """
    if not source_dir.is_dir():
        raise RunError(f"run.{spec.name}: source_directory {source_dir} is not a folder")
    run_id = new_run_id(spec.experiment)
    run_dir = home.resolve() / "runs" / run_id
    try:
        snapshot = _prepare_run_dir(spec, source_dir, run_dir)
    except BaseException:
        shutil.rmtree(run_dir, ignore_errors=True)  # no folder without a recorded run
        raise
    spec = replace(spec, run_id=run_id, run_dir=str(run_dir), snapshot_dir=str(snapshot),
                   workspace_id=workspace.id, subscription_id=workspace.subscription_id,
                   resource_group=workspace.resource_group, workspace_name=workspace.name)
    row = RunRow(id=run_id, experiment=spec.experiment, name=spec.name, spec_hash=spec_hash,
                 compute=spec.compute, status=status.NOT_STARTED, error=None,
                 created_at=time.time(), started_at=None, ended_at=None, supervisor_pid=None,
                 run_dir=str(run_dir), owner=owner, spec=spec.to_dict())
    store.insert_run(row, workspace.id)
    if start:
        spawn_supervisor(store, run_id)
    return _get(store, run_id)


def _prepare_run_dir(spec: RunSpec, source_dir: Path, run_dir: Path) -> Path:
    """Lay out a new run's folder; returns the snapshot folder."""
    snapshot = run_dir / "snapshot"
    try:
        files = copy_snapshot(source_dir, snapshot)
    except OSError as exc:
        raise RunError(f"run.{spec.name}: cannot snapshot source_directory {source_dir}: "
                       f"{exc}") from exc
    if spec.entry_script and spec.entry_script not in files:
        raise RunError(f"run.{spec.name}: entry_script {spec.entry_script!r} is not in "
                       f"source_directory {source_dir} (or .amlignore leaves it out)")
    for folder in ("outputs", "logs", "system"):
        (run_dir / folder).mkdir(exist_ok=True)
    # Scripts write ./outputs as on Azure ML; it belongs to the run, not to the code copy.
    # Outputs a source folder already holds become the run's first outputs.
    link = snapshot / "outputs"
    if link.is_dir() and not link.is_symlink():
        for entry in link.iterdir():
            shutil.move(str(entry), str(run_dir / "outputs" / entry.name))
        link.rmdir()
    if not link.exists() and not link.is_symlink():
        link.symlink_to(Path("..") / "outputs", target_is_directory=True)
    if spec.secrets:
        _write_private(run_dir / SECRETS_FILE, json.dumps(spec.secrets))
    return snapshot


def spawn_supervisor(store: Store, run_id: str) -> int:
    """Start the run's supervisor in a new session, output to system/supervisor.log."""
    run_dir = Path(_get(store, run_id).run_dir)
    (run_dir / "system").mkdir(parents=True, exist_ok=True)
    with (run_dir / "system" / "supervisor.log").open("ab") as log:
        process = subprocess.Popen(
            # absolute: the supervisor's cwd is the run folder, not the caller's
            [sys.executable, "-m", MODULE, str(Path(store.path).resolve()), run_id],
            cwd=run_dir,
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True)
    status.claim(store, run_id, process.pid, marker=MARKER)
    # Reap it when it ends, so it never lingers as a zombie of a long-lived caller.
    threading.Thread(target=process.wait, daemon=True).start()
    return process.pid


def ensure_supervised(store: Store, run_id: str) -> RunRow:
    """Make sure an unfinished run has a live supervisor.

    A run that never got going (NotStarted, Queued: the CLI died before the supervisor
    started, or the machine restarted) gets a new supervisor. A run whose supervisor died
    after it started preparing or running is marked Failed, with what happened in the error,
    and anything left of its tasks is stopped; a dead run being canceled becomes Canceled.
    """
    row = _get(store, run_id)
    if row.status in status.TERMINAL or _supervised(row):
        return row
    if row.status in (status.NOT_STARTED, status.QUEUED):
        spawn_supervisor(store, run_id)
    elif row.status == status.CANCELING:
        _finish_orphan(store, row, status.CANCELED, None)
    else:
        who = f"pid {row.supervisor_pid}" if row.supervisor_pid else "never recorded"
        _finish_orphan(store, row, status.FAILED,
                       f"the run's supervisor ({who}) stopped unexpectedly while the run was "
                       f"{row.status}; whatever was left of its processes was stopped")
    return _get(store, run_id)


def reconcile(store: Store, row: RunRow) -> RunRow:
    """The run as it really is, for every read (runs, status, plan, logs).

    A run Preparing, Running or Canceling needs its supervisor; if that process is gone
    (killed, machine restarted), the run is ended here as `ensure_supervised` would:
    Failed with the reason (Canceled if it was being canceled), its orphaned tasks
    stopped. A run not yet started is left to the next apply's recovery, which starts a
    new supervisor for it.
    """
    if row.status not in status.SUPERVISED or _supervised(row):
        return row
    if store.read_only:  # cannot record it: show it as it is, and leave the repair to apply
        return replace(row, status=status.FAILED, error=(
            f"the run's supervisor (pid {row.supervisor_pid}) stopped unexpectedly while the "
            f"run was {row.status} (not recorded: the state folder is read-only)"))
    fresh = _get(store, row.id)  # it may have ended as its supervisor exited
    if (fresh.status, fresh.supervisor_pid) != (row.status, row.supervisor_pid):
        return fresh
    return ensure_supervised(store, row.id)


def _supervised(row: RunRow) -> bool:
    return status.supervisor_alive(row.supervisor_pid, row.id, MARKER, row.supervisor_started)


def cancel(store: Store, run_id: str) -> RunRow:
    """Ask a run to stop: status Canceling and SIGTERM to its supervisor, which stops every
    task and records Canceled. Returns at once (see `wait_for`). A run that already ended is
    left as it is; one without a live supervisor is canceled here and now."""
    row = _get(store, run_id)
    if row.status in status.TERMINAL:
        return row
    status.transition(store, run_id, status.CANCELING, status.ACTIVE)
    row = _get(store, run_id)
    if row.status != status.CANCELING:
        return row  # it ended meanwhile
    if _supervised(row):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(row.supervisor_pid or 0, signal.SIGTERM)
    else:
        _finish_orphan(store, row, status.CANCELED, None)
    return _get(store, run_id)


def wait_for(store: Store, run_id: str, timeout: float | None = None,
             until: frozenset[str] = status.TERMINAL) -> RunRow:
    """Poll until the run's status is one of `until` (terminal by default) or `timeout`
    seconds have passed; returns the run as last seen."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        row = _get(store, run_id)
        if row.status in until or (deadline is not None and time.monotonic() >= deadline):
            return row
        time.sleep(WAIT_POLL_SECONDS)


def task_pids(run_dir: Path) -> list[int]:
    """Pids (= process group ids) of a run's tasks, from tasks.json ([] before launch)."""
    try:
        data = json.loads((run_dir / TASKS_FILE).read_text())
    except (OSError, ValueError):
        return []
    return [int(t["pid"]) for t in data.get("tasks", []) if t.get("pid")]


def _finish_orphan(store: Store, row: RunRow, outcome: str, error: str | None) -> None:
    """End a run nobody supervises: stop its leftover tasks, free its nodes, record it."""
    groups = {pgid for pgid in task_pids(Path(row.run_dir))
              if any(procs.environ_has(pid, "AZUREML_RUN_ID", row.id)
                     for pid in procs.group_members(pgid))}
    # Tasks started after the last tasks.json write, and what they started, carry the
    # run's id in their environment too.
    groups.update(procs.groups_with_env("AZUREML_RUN_ID", row.id))
    procs.stop_groups(sorted(groups), ORPHAN_STOP_GRACE_SECONDS)
    pool.release(store, row.id)
    status.transition(store, row.id, outcome, status.ACTIVE, error=error, ended_at=time.time())
    with contextlib.suppress(FileNotFoundError):
        (Path(row.run_dir) / SECRETS_FILE).unlink()


def _write_private(path: Path, text: str) -> None:
    """Write a file only the user can read (secret values)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as stream:
        stream.write(text)


def _get(store: Store, run_id: str) -> RunRow:
    row = store.get_run(run_id)
    if row is None:
        raise RunError(f"no run {run_id!r} in this workspace")
    return row
