"""The process that carries one local run from NotStarted to a terminal status.

    python -m amlctl.providers.local.runs.supervisor STATE_DB RUN_ID

Started detached by `submit` (own session, output to `<run_dir>/system/supervisor.log`), so
the run goes on whatever happens to the CLI. Its life, as Azure ML's statuses:

- Queued: until the compute's node pool grants node_count nodes (`pool.acquire`, polled).
- Preparing: inputs resolved (mount: the datastore folder itself; download: a private copy
  under `<run_dir>/inputs/<id>`), output and temp folders made, the pip environment built.
- Running: every task a real process in its own session (cwd = the snapshot, log in
  `<run_dir>/logs/<role>_<index>.log`). Completed when every worker has exited 0; parameter
  servers, which never exit by themselves, are then stopped. A worker (or parameter server)
  exiting non-zero fails the run, naming the task, its exit code and its last log lines.
- Canceling -> Canceled: `cancel` sets Canceling and sends SIGTERM; every task is stopped.
  `max_run_duration_seconds` (counted from Running) cancels the run the way Azure ML does:
  status Canceled, with the reason in the error.

Stopping a task is SIGTERM to its whole process group, then SIGKILL after a grace period, and
the supervisor is a child subreaper where Linux allows, so nothing a task started outlives
the run. The nodes always go back to the pool at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from amlctl.metrics import filestore
from amlctl.providers.local import pool
from amlctl.providers.local.runs import envs, procs, status, topology
from amlctl.providers.local.runs.spec import RunSpec
from amlctl.providers.local.runs.topology import WORKER, Task
from amlctl.providers.local.store import Store

MODULE = "amlctl.providers.local.runs.supervisor"
# How a live supervisor is recognised in /proc: a part of the command line shared with the
# module's former name (amlctl.runs.supervisor), so a run supervised by a process started
# before an upgrade is not taken for orphaned and given a second supervisor.
MARKER = "runs.supervisor"
QUEUE_POLL_SECONDS = 0.2
TASK_POLL_SECONDS = 0.05
STATUS_POLL_SECONDS = 0.2
STOP_GRACE_SECONDS = 5.0
ERROR_TAIL_LINES = 10
SECRETS_FILE = "secrets.json"
TASKS_FILE = "tasks.json"

# Variables a run sets itself; stale values inherited from the caller must not leak in.
_OWN_PREFIXES = ("AZUREML_", "AZ_BATCHAI_", "OMPI_COMM_WORLD_", "MLFLOW_")
_OWN_NAMES = ("TF_CONFIG",)


def run_home(run_dir: Path) -> Path:
    """The backend's home folder, from a run folder `<home>/runs/<run_id>`."""
    return run_dir.parent.parent


def tail(path: Path, lines: int = ERROR_TAIL_LINES) -> list[str]:
    """The last `lines` lines of a text file ([] when it does not exist)."""
    try:
        with path.open(errors="replace") as stream:
            return [line.rstrip("\n") for line in deque(stream, maxlen=lines)]
    except OSError:
        return []


def _link_on_path(folder: Path, relpath: str) -> str | None:
    """The first part of `relpath` (below `folder`) that is a symlink, or None."""
    current, seen = folder, []
    for part in Path(relpath).parts:
        current = current / part
        seen.append(part)
        try:
            if stat.S_ISLNK(current.lstat().st_mode):
                return "/".join(seen)
        except FileNotFoundError:
            return None  # the missing path is reported as such
    return None


class _Stop(Exception):
    """Leave the run's current phase with this outcome."""

    def __init__(self, outcome: str, error: str | None = None) -> None:
        super().__init__(outcome, error)
        self.outcome = outcome
        self.error = error


class _Gone(Exception):
    """The run reached a terminal status elsewhere; nothing left to record."""


@dataclass
class _Running:
    task: Task
    process: subprocess.Popen[bytes]
    log_path: Path
    returncode: int | None = None


@dataclass
class Supervisor:
    """Drives one run. `run()` returns the final status."""

    store: Store
    run_id: str
    spec: RunSpec = field(init=False)
    run_dir: Path = field(init=False)
    stop_requested: bool = False
    tasks: list[_Running] = field(default_factory=list)
    _last_status_check: float = float("-inf")
    _status_seen: str | None = status.NOT_STARTED

    def __post_init__(self) -> None:
        row = self.store.get_run(self.run_id)
        if row is None:
            raise SystemExit(f"no run {self.run_id} in {self.store.path}")
        self.run_dir = Path(row.run_dir)
        secrets_path = self.run_dir / SECRETS_FILE
        secrets = json.loads(secrets_path.read_text()) if secrets_path.exists() else {}
        self.spec = RunSpec.from_dict(row.spec, secrets=secrets)

    # the whole life ------------------------------------------------------------------------

    def run(self) -> str:
        """Queue, prepare, run and stop the tasks; record and return the final status."""
        outcome, error = status.FAILED, None
        try:
            outcome, error = self._lifecycle()
        except _Stop as stop:
            outcome, error = stop.outcome, stop.error
        except _Gone:
            outcome = ""
        except BaseException as exc:  # a supervisor bug must still end the run
            outcome, error = status.FAILED, f"the run's supervisor failed: {exc!r}"
        finally:
            self._stop_tasks()
            pool.release(self.store, self.run_id)
        if outcome:
            done = status.transition(self.store, self.run_id, outcome, status.ACTIVE,
                                     error=error, ended_at=time.time())
            self._say(f"{outcome}" + (f": {error}" if error else "") +
                      ("" if done else " (not recorded: the run had already ended)"))
        with contextlib.suppress(FileNotFoundError):
            (self.run_dir / SECRETS_FILE).unlink()
        final = self.store.get_run(self.run_id)
        return final.status if final else outcome

    def _lifecycle(self) -> tuple[str, str | None]:
        self._advance(status.QUEUED, {status.NOT_STARTED, status.QUEUED})
        self._queue()
        self._advance(status.PREPARING, {status.QUEUED})
        input_paths, python = self._prepare()
        started = time.time()
        self._advance(status.RUNNING, {status.PREPARING}, started_at=started)
        self._launch(input_paths, python)
        return self._monitor(started)

    # phases --------------------------------------------------------------------------------

    def _queue(self) -> None:
        spec = self.spec
        nodes = spec.distribution.node_count
        announced = False
        while True:
            self._check_stop()
            compute = self.store.get_object(spec.workspace_id, "compute", spec.compute)
            if compute is None:
                raise _Stop(status.FAILED, f"compute {spec.compute!r} no longer exists in "
                                           f"workspace {spec.workspace_name!r}")
            max_nodes = int(compute.attrs.get("max_nodes", spec.max_nodes))
            if nodes > max_nodes:
                raise _Stop(status.FAILED, f"the run needs {nodes} nodes but compute "
                                           f"{spec.compute!r} has max_nodes {max_nodes}")
            if pool.acquire(self.store, spec.workspace_id, spec.compute, self.run_id, nodes,
                            max_nodes):
                self._say(f"got {nodes} node(s) of {spec.compute}")
                return
            if not announced:
                self._say(f"waiting for {nodes} free node(s) of {spec.compute}")
                announced = True
            self._sleep(QUEUE_POLL_SECONDS)

    def _prepare(self) -> tuple[dict[str, str], Path]:
        spec, run_dir = self.spec, self.run_dir
        input_paths = {input_id: self._resolve_input(input_id) for input_id in spec.inputs}
        for output_id in spec.outputs:
            topology.output_dir(run_dir, output_id).mkdir(parents=True, exist_ok=True)
        (run_dir / "outputs").mkdir(exist_ok=True)
        (run_dir / "logs").mkdir(exist_ok=True)
        filestore.create_run(run_dir, spec.run_id, spec.experiment, spec.name)
        for task in topology.layout(spec.distribution):
            topology.node_temp(run_dir, task.node).mkdir(parents=True, exist_ok=True)
        topology.shared_temp(run_dir).mkdir(parents=True, exist_ok=True)
        env = spec.environment
        if env.docker_image:
            self._say(f"docker_image {env.docker_image} is recorded, not run, on the local "
                      "backend")
        if env.conda_file:
            self._say(f"conda_file {env.conda_file} is recorded, not built, on the local backend")
        if spec.entry_script and not (Path(spec.snapshot_dir) / spec.entry_script).is_file():
            raise _Stop(status.FAILED, f"entry_script {spec.entry_script!r} is not in the "
                                       "run's snapshot of source_directory")
        log_path = run_dir / "system" / "environment.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("a") as log:
            try:
                python = envs.ensure_env(run_home(run_dir), env.pip, log=log,
                                         should_stop=self._stop_now)
            except envs.EnvBuildStopped:
                self._check_stop()
                raise
            except envs.EnvBuildError as exc:
                raise _Stop(status.FAILED, f"environment build failed: {exc}\n" +
                            "\n".join(tail(log_path))) from None
        self._check_stop()
        self._say(f"tasks run with {python}")
        return input_paths, python

    def _resolve_input(self, input_id: str) -> str:
        spec = self.spec.inputs[input_id]
        source = spec.source
        link = _link_on_path(Path(spec.datastore_dir), spec.path)
        if link is not None:
            # A run may plant links in a datastore (mount inputs are the folder itself);
            # amlctl never reads through one, as uploads never write through one.
            raise _Stop(status.FAILED, f"input {input_id}: {link} in datastore "
                                       f"{spec.datastore!r} is a symbolic link; amlctl never "
                                       "follows links in a datastore: remove it")
        if not source.exists():
            raise _Stop(status.FAILED, f"input {input_id}: datastore {spec.datastore!r} has no "
                                       f"path {spec.path!r}")
        if spec.mode == "mount":
            return str(source)
        target = self.run_dir / "inputs" / input_id
        shutil.rmtree(target, ignore_errors=True)  # a copy a previous attempt left halfway
        if source.is_dir():
            # Links inside are copied as links, never as what they point at.
            shutil.copytree(source, target, symlinks=True)
            return str(target)
        target.mkdir(parents=True)
        copied = target / source.name
        shutil.copy2(source, copied)
        return str(copied)

    def _launch(self, input_paths: dict[str, str], python: Path) -> None:
        spec, run_dir = self.spec, self.run_dir
        tasks = topology.with_ports(topology.layout(spec.distribution), spec.distribution)
        base = _base_env(python)
        for task in tasks:
            own = topology.task_env(spec, task, tasks, run_dir, input_paths)
            variables = {**spec.environment.env_vars, **spec.secrets, **own}
            args = [topology.expand(a, variables) for a in spec.role_args(task.role)]
            if spec.entry_script:
                cmd = [str(python), spec.entry_script, *args]
            else:
                cmd = ["/bin/sh", "-c", f'{spec.command} "$@"', "sh", *args]
            log_path = run_dir / "logs" / task.log_name
            with log_path.open("ab") as log:
                process = subprocess.Popen(
                    cmd, cwd=spec.snapshot_dir, env={**base, **variables}, stdin=subprocess.DEVNULL,
                    stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            self.tasks.append(_Running(task, process, log_path))
            self._write_tasks()  # after each start, so a recovery finds every task
        self._say("started " + ", ".join(f"{r.task.name} (pid {r.process.pid}, node "
                                         f"{r.task.node})" for r in self.tasks))

    def _write_tasks(self) -> None:
        _write_json(self.run_dir / TASKS_FILE, {"tasks": [
            {"role": r.task.role, "index": r.task.index, "node": r.task.node,
             "port": r.task.port, "pid": r.process.pid, "log": f"logs/{r.task.log_name}",
             "exit_code": r.returncode}
            for r in self.tasks]})

    def _monitor(self, started: float) -> tuple[str, str | None]:
        limit = self.spec.max_run_duration_seconds
        deadline = started + limit if limit else None
        workers = [r for r in self.tasks if r.task.role == WORKER]
        while True:
            for running in self.tasks:
                if running.returncode is None:
                    running.returncode = running.process.poll()
                    if running.returncode is not None:
                        self._write_tasks()  # per-role states for `watch`
                    if running.returncode not in (None, 0):
                        return status.FAILED, self._failure(running)
            if all(r.returncode == 0 for r in workers):
                return status.COMPLETED, None
            self._check_stop()
            if deadline is not None and time.time() >= deadline:
                return status.CANCELED, (f"the run exceeded max_run_duration_seconds ({limit} s) "
                                         "and was canceled")
            self._sleep(TASK_POLL_SECONDS)

    def _failure(self, running: _Running) -> str:
        code = running.returncode or 0
        how = (f"was killed by signal {signal.Signals(-code).name}" if code < 0
               else f"exited with code {code}")
        lines = tail(running.log_path)
        text = f"{running.task.name} {how}"
        if lines:
            text += f"; last lines of logs/{running.task.log_name}:\n" + "\n".join(lines)
        return text

    # stopping ------------------------------------------------------------------------------

    def _stop_tasks(self) -> None:
        """SIGTERM every task's group, SIGKILL what is left after the grace period, reap all,
        then stop whatever the tasks left behind (reparented to us as subreaper)."""
        for running in self.tasks:
            if running.process.poll() is None or procs.group_members(running.process.pid):
                procs.signal_group(running.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        while time.monotonic() < deadline and any(
                r.process.poll() is None or procs.group_members(r.process.pid)
                for r in self.tasks):
            self._reap_strays()
            time.sleep(TASK_POLL_SECONDS)
        for running in self.tasks:
            procs.signal_group(running.process.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                running.process.wait(timeout=STOP_GRACE_SECONDS)
        self._reap_strays(kill=True)

    def _reap_strays(self, kill: bool = False) -> None:
        owned = {r.process.pid for r in self.tasks}
        strays = [pid for pid in procs.children(os.getpid()) if pid not in owned]
        if kill:
            for pid in strays:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.01 if strays else 0)
        procs.reap(strays)

    # status and stop requests --------------------------------------------------------------

    def _advance(self, to: str, allowed_from: set[str], **fields: float) -> None:
        if status.transition(self.store, self.run_id, to, allowed_from, **fields):
            self._say(to)
            return
        now = status.current(self.store, self.run_id)
        if now == status.CANCELING:
            raise _Stop(status.CANCELED)
        raise _Gone()

    def _stop_now(self) -> bool:
        """True once a cancel was asked for (signal, or Canceling in the store), or the run
        ended or was deleted (its workspace destroyed) behind our back."""
        if self.stop_requested:
            return True
        now = time.monotonic()
        if now - self._last_status_check >= STATUS_POLL_SECONDS:
            self._last_status_check = now
            self._status_seen = status.current(self.store, self.run_id)
        return self._status_seen is None or self._status_seen in (status.CANCELING,
                                                                  *status.TERMINAL)

    def _check_stop(self) -> None:
        if self._stop_now():
            if self._status_seen is None or self._status_seen in status.TERMINAL:
                raise _Gone()
            raise _Stop(status.CANCELED)

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _say(self, message: str) -> None:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
        print(f"{stamp} {self.run_id}: {message}", flush=True)


def _base_env(python: Path) -> dict[str, str]:
    """The caller's environment without run variables, with the task interpreter first on
    PATH (so `python` in a command means it) and unbuffered output (so logs are live)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(_OWN_PREFIXES) and k not in _OWN_NAMES}
    env["PATH"] = str(python.parent) + os.pathsep + env.get("PATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    if python != Path(sys.executable):
        env["VIRTUAL_ENV"] = str(python.parent.parent)
    return env


def _write_json(path: Path, data: object) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    """Entry point: supervise RUN_ID recorded in STATE_DB until it ends."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print(f"usage: python -m {MODULE} STATE_DB RUN_ID", file=sys.stderr)
        return 2
    db_path, run_id = Path(args[0]), args[1]
    if not db_path.is_file():
        print(f"no state database at {db_path}", file=sys.stderr)
        return 2
    store = Store(db_path)
    if store.get_run(run_id) is None:
        print(f"no run {run_id} in {db_path}", file=sys.stderr)
        return 2
    if not status.claim(store, run_id, os.getpid(), marker=MARKER):
        print(f"run {run_id} already has a live supervisor", flush=True)
        return 0
    supervisor = Supervisor(store, run_id)

    def request_stop(signum: int, frame: object) -> None:
        supervisor.stop_requested = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    procs.become_subreaper()
    final = supervisor.run()
    store.close()
    return 0 if final in (status.COMPLETED, status.CANCELED, "") else 1


if __name__ == "__main__":
    sys.exit(main())

