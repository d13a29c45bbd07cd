"""`amlctl watch` on a real local run whose roles finish at different times, in a
pseudo-terminal (redrawn in place) and piped (plain lines).

The run: a parameter server (stopped by the supervisor at the end), worker 1 logs two loss
values with MLflow and exits at once, worker 0 waits for a release file the test creates only
after watch has shown worker 1 Completed while worker 0 is still Running.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import signal
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from pathlib import Path

import pytest

MANIFEST = """\
version: 1
name: watchtest
backend: local
workspace:
  name: watch-ws
  subscription_id: "00000000-0000-0000-0000-000000000000"
  resource_group: rg
  location: westeurope
computes:
  cpu: {{vm_size: Standard_D2_v3, min_nodes: 0, max_nodes: 1}}
experiments:
  exp: {{}}
runs:
  staggered:
    experiment: exp
    compute: cpu
    source_directory: src
    entry_script: task.py
    arguments: {{--release: "{release}", --code: "{code}"}}
    distribution: {{type: parameter_server, node_count: 1, worker_count: 2,
                   parameter_server_count: 1}}
"""

TASK = """\
import json, os, sys, time
from pathlib import Path

task = json.loads(os.environ["TF_CONFIG"])["task"]
role, index = task["type"], task["index"]
args = sys.argv[1:]
release, code = Path(args[args.index("--release") + 1]), int(args[args.index("--code") + 1])
if role == "ps":
    print("ps serving", flush=True)
    time.sleep(600)
elif index == 1:
    import mlflow
    mlflow.log_metric("loss", 1.0, step=1)
    mlflow.log_metric("loss", 0.5, step=2)
    print("worker 1 logged", flush=True)
else:
    print("worker 0 waiting", flush=True)
    while not release.exists():
        time.sleep(0.05)
    print("worker 0 released", flush=True)
    sys.exit(code)
"""

ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
REDRAW = re.compile(r"\x1b\[\d+F\x1b\[J")
TIMEOUT = 60.0


def project(tmp_path: Path, code: int) -> tuple[Path, Path]:
    """A manifest folder whose run ends with worker 0's exit `code`; the release file."""
    folder = tmp_path / "project"
    (folder / "src").mkdir(parents=True)
    release = tmp_path / "release"
    (folder / "amlctl.yaml").write_text(MANIFEST.format(release=release, code=code))
    (folder / "src" / "task.py").write_text(TASK)
    return folder, release


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("AMLCTL_", "MLFLOW_"))}
    return {**base, "COLUMNS": "160"}


def amlctl(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "amlctl", *args], cwd=folder, env=env(),
                          capture_output=True, text=True, timeout=TIMEOUT, check=False)


def submit(folder: Path) -> str:
    applied = amlctl(folder, "apply", "--auto-approve")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    runs = json.loads(amlctl(folder, "runs", "--json").stdout)
    assert len(runs) == 1
    return runs[0]["id"]


def run_record(folder: Path) -> dict[str, object]:
    return json.loads(amlctl(folder, "runs", "--json").stdout)[0]


class Output:
    """What a watch process writes, read as it comes, through a pipe or a pty master."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = b""
        self.closed = False

    def read(self, timeout: float) -> None:
        ready, _, _ = select.select([self.fd], [], [], timeout)
        if not ready:
            return
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # a pty master reads EIO once the child side is closed
            chunk = b""
        self.closed = not chunk
        self.data += chunk

    @property
    def text(self) -> str:
        return self.data.decode(errors="replace").replace("\r\n", "\n")

    def wait_for(self, condition: Callable[[str], bool], what: str) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not condition(self.text):
            assert not self.closed, f"output ended before {what}:\n{self.text}"
            assert time.monotonic() < deadline, f"no {what} in:\n{self.text}"
            self.read(0.2)

    def drain(self) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not self.closed and time.monotonic() < deadline:
            self.read(0.2)


def role_states(text: str) -> dict[str, str]:
    """`{task: state}` from one frame or one plain line."""
    return dict(re.findall(r"((?:ps|worker):\d)\s+(Queued|Running|Completed|Failed|Canceled)",
                           text))


def staggered(states: dict[str, str]) -> bool:
    return states.get("worker:1") == "Completed" and states.get("worker:0") == "Running"


def frames(text: str) -> list[str]:
    return [ANSI.sub("", part) for part in REDRAW.split(text)]


@pytest.mark.parametrize(("code", "command"), [
    (0, ["apply", "--auto-approve", "--wait"]),  # apply --wait on a terminal: the same view
    (3, ["watch", "run.staggered", "--interval", "0.2"]),
])
def test_watch_in_a_terminal_redraws_in_place(tmp_path: Path, code: int,
                                              command: list[str]) -> None:
    folder, release = project(tmp_path, code)
    if command[0] == "watch":
        submit(folder)
    master, slave = pty.openpty()
    watcher = subprocess.Popen([sys.executable, "-m", "amlctl", *command], cwd=folder,
                               env=env(), stdin=slave, stdout=slave, stderr=slave,
                               close_fds=True)
    os.close(slave)
    output = Output(master)
    try:
        output.wait_for(lambda text: any(staggered(role_states(f)) for f in frames(text)),
                        "frame with worker:1 Completed and worker:0 Running")
        release.write_text("go")
        output.drain()
        assert watcher.wait(timeout=TIMEOUT) == (0 if code == 0 else 1)
    finally:
        if watcher.poll() is None:
            watcher.kill()
        os.close(master)

    text = output.text
    record = run_record(folder)
    run_id = record["id"]
    assert REDRAW.search(text), "a terminal gets the view redrawn in place"
    assert f"Run {run_id} (staggered)" in frames(text)[0]
    last = frames(text)[-1]
    expected = "Completed" if code == 0 else "Failed"
    assert record["status"] == expected
    assert f"Run {run_id}: {expected}" in last
    assert role_states(last) == {
        "ps:0": "Completed" if code == 0 else "Canceled",
        "worker:0": expected,
        "worker:1": "Completed",
    }
    assert "worker 0 released" in last  # each role's last log line
    assert re.search(r"loss\s+0\.5\s+step 2\s+█▁", last)  # the metric, latest and sparkline
    assert re.search(r"elapsed \d:\d\d:\d\d", last)


def test_watch_piped_prints_plain_lines_and_ctrl_c_leaves_the_run(tmp_path: Path) -> None:
    folder, release = project(tmp_path, 3)
    run_id = submit(folder)

    # A first watcher is interrupted: it exits 130 and the run goes on.
    first = subprocess.Popen([sys.executable, "-m", "amlctl", "watch", run_id, "--interval",
                              "0.2"], cwd=folder, env=env(), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
    assert first.stdout is not None
    Output(first.stdout.fileno()).wait_for(lambda text: "worker:0" in text, "a first line")
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=TIMEOUT)
    assert first.returncode == 130
    assert "Stopped watching" in err.decode() and run_id in err.decode()
    assert run_record(folder)["status"] == "Running"

    second = subprocess.Popen([sys.executable, "-m", "amlctl", "watch", "run.staggered",
                               "--interval", "0.2"], cwd=folder, env=env(),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert second.stdout is not None
    output = Output(second.stdout.fileno())
    try:
        output.wait_for(lambda text: any(staggered(role_states(line))
                                         for line in text.splitlines()),
                        "a line with worker:1 Completed and worker:0 Running")
        release.write_text("go")
        output.drain()
        assert second.wait(timeout=TIMEOUT) == 1  # the run failed
    finally:
        if second.poll() is None:
            second.kill()

    text = output.text
    assert "\x1b[" not in text  # no terminal, no escape sequences
    lines = text.splitlines()
    views = [line for line in lines if re.match(r"\d\d:\d\d:\d\d  ", line)]
    states = [role_states(line) for line in views]
    assert states[-1] == {"ps:0": "Canceled", "worker:0": "Failed", "worker:1": "Completed"}
    assert views[-1].split("  ")[1].startswith("Failed ")
    assert views[-1].endswith("loss=0.5")
    record = run_record(folder)
    assert record["status"] == "Failed"
    assert record["metrics"] == {"loss": 0.5}  # the `runs` column
    status = json.loads(amlctl(folder, "status", "--json").stdout)
    assert status["runs"][0]["metrics"] == {"loss": 0.5}
    assert f"Run {run_id}: Failed: worker:0 exited with code 3" in text


def _own_terminal() -> None:
    """In the child: a new session whose controlling terminal is its stdin (the pty), so
    Ctrl-C typed there reaches it as it reaches a command typed in a shell."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def test_ctrl_c_in_the_terminal_stops_apply_wait_not_the_run(tmp_path: Path) -> None:
    folder, release = project(tmp_path, 0)
    master, slave = pty.openpty()
    applying = subprocess.Popen([sys.executable, "-m", "amlctl", "apply", "--auto-approve",
                                 "--wait"], cwd=folder, env=env(), stdin=slave, stdout=slave,
                                stderr=slave, close_fds=True, preexec_fn=_own_terminal)
    os.close(slave)
    output = Output(master)
    try:
        output.wait_for(lambda text: any(staggered(role_states(f)) for f in frames(text)),
                        "frame with worker:1 Completed and worker:0 Running")
        os.write(master, b"\x03")  # Ctrl-C, typed in the terminal
        output.drain()
        assert applying.wait(timeout=TIMEOUT) == 130
    finally:
        if applying.poll() is None:
            applying.kill()
        os.close(master)
    assert "Stopped watching" in output.text
    assert run_record(folder)["status"] == "Running"  # the run did not get the Ctrl-C

    release.write_text("go")
    watched = amlctl(folder, "watch", "run.staggered", "--interval", "0.2")
    assert watched.returncode == 0, watched.stdout + watched.stderr
    assert run_record(folder)["status"] == "Completed"


def test_apply_wait_holds_no_lock_while_it_follows_the_run(tmp_path: Path) -> None:
    """Following a run writes nothing, so `apply --wait` lets go of the workspace lock first:
    another apply in the meantime is not refused (it finds nothing to do)."""
    folder, release = project(tmp_path, 0)
    waiting = subprocess.Popen([sys.executable, "-m", "amlctl", "apply", "--auto-approve",
                                "--wait"], cwd=folder, env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    assert waiting.stdout is not None
    output = Output(waiting.stdout.fileno())
    try:
        output.wait_for(lambda text: "worker 0 waiting" in text, "the run's logs streamed")
        other = amlctl(folder, "apply", "--auto-approve")
        assert other.returncode == 0, other.stdout + other.stderr
        assert "Nothing to do" in other.stdout
        assert waiting.poll() is None  # still following the run
        release.write_text("go")
        output.drain()
        assert waiting.wait(timeout=TIMEOUT) == 0, output.text
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert run_record(folder)["status"] == "Completed"
