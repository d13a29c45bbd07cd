"""The Python environment a local run's tasks execute in.

- No `environment.pip`: the tasks use the interpreter amlctl itself runs under.
- `environment.pip`: a virtualenv built once per package list (and parent interpreter), kept
  under `<home>/envs/<hash>` and shared by every run asking for the same list. It sees the
  packages of amlctl's own interpreter (`--system-site-packages`, plus amlctl's virtualenv
  when it runs from one), so pip only adds what is missing.
- `environment.docker_image` is recorded in the run's spec and shown, but not run: the local
  backend starts no containers, the tasks run on this machine directly.
- `environment.conda_file` is likewise recorded, not built.

A build holds a lock file (`<hash>.lock`), so concurrent runs wait for one builder instead of
clashing, and is complete only once its marker file exists: a build killed halfway is removed
and redone by the next run that needs it, never used. (The build happens at its final path
rather than being renamed into place, because a virtualenv's scripts record its absolute path.)
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import signal
import site
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO

MARKER = ".amlctl-complete"
POLL_SECONDS = 0.1


class EnvBuildError(Exception):
    """pip or venv failed; the message ends with the tail of their output."""


class EnvBuildStopped(Exception):
    """The build was abandoned because the run was canceled or timed out."""


def env_hash(pip: Sequence[str]) -> str:
    """Key of the environment for this package list on this interpreter."""
    key = json.dumps({"pip": list(pip), "python": sys.version, "parent": sys.prefix})
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def env_python(env_dir: Path) -> Path:
    """The interpreter of a built environment."""
    return env_dir / "bin" / "python"


def ensure_env(home: Path, pip: Sequence[str], *, log: IO[str] | None = None,
               should_stop: Callable[[], bool] | None = None, install: bool = True) -> Path:
    """The interpreter to run tasks with, building the environment first if needed.

    `log` (an open file) receives venv/pip output; `should_stop` is polled while waiting for
    another builder or for pip, and makes the build stop with EnvBuildStopped.
    `install=False` builds the virtualenv but skips pip (for tests that must not reach a
    package index).
    """
    if not pip:
        return Path(sys.executable)
    stop = should_stop or (lambda: False)
    root = home / "envs"
    root.mkdir(parents=True, exist_ok=True)
    env_dir = root / env_hash(pip)
    if (env_dir / MARKER).exists():
        return env_python(env_dir)
    with _locked(root / f"{env_dir.name}.lock", stop):
        if (env_dir / MARKER).exists():  # another run built it while we waited
            return env_python(env_dir)
        shutil.rmtree(env_dir, ignore_errors=True)  # a build that was killed halfway
        _build(env_dir, list(pip), log, stop, install)
        _write_marker(env_dir, list(pip))
    return env_python(env_dir)


@contextlib.contextmanager
def _locked(path: Path, stop: Callable[[], bool]) -> Iterator[None]:
    """An exclusive flock on `path`, waited for while `stop()` is false. The kernel drops it
    if the holder dies, so a killed builder never blocks the next one."""
    with path.open("a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if stop():
                    raise EnvBuildStopped(
                        "stopped while waiting for another environment build") from None
                time.sleep(POLL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _build(env_dir: Path, pip: list[str], log: IO[str] | None, stop: Callable[[], bool],
           install: bool) -> None:
    have_pip = importlib.util.find_spec("pip") is not None
    venv_cmd = [sys.executable, "-m", "venv", "--system-site-packages", str(env_dir)]
    if have_pip:
        venv_cmd.insert(3, "--without-pip")  # pip from amlctl's interpreter drives the install
    _run(venv_cmd, log, stop)
    _see_parent_packages(env_dir)
    if not install:
        return
    python = str(env_python(env_dir))
    if have_pip:
        pip_cmd = [sys.executable, "-m", "pip", "--python", python]
    else:
        pip_cmd = [python, "-m", "pip"]
    _run([*pip_cmd, "install", "--disable-pip-version-check", "--no-input", *pip], log, stop)


def _see_parent_packages(env_dir: Path) -> None:
    """When amlctl runs from a virtualenv, make its packages visible in the new environment
    too (--system-site-packages only reaches the base interpreter's). `site.addsitedir` so
    that the parent's own .pth files (editable installs) are honoured."""
    if sys.prefix == sys.base_prefix:
        return
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    target = env_dir / "lib" / version / "site-packages"
    target.mkdir(parents=True, exist_ok=True)
    lines = "".join(f"import site; site.addsitedir({path!r})\n"
                    for path in site.getsitepackages())
    (target / "_amlctl_parent.pth").write_text(lines)


def _run(cmd: list[str], log: IO[str] | None, stop: Callable[[], bool]) -> None:
    """Run a build step in its own process group, output to `log`; stop it when asked."""
    output = log if log is not None else subprocess.DEVNULL
    if log is not None:
        log.write("$ " + " ".join(cmd) + "\n")
        log.flush()
    env = dict(os.environ, PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONUNBUFFERED="1")
    process = subprocess.Popen(cmd, stdout=output, stderr=subprocess.STDOUT, env=env,
                               stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        while process.poll() is None:
            if stop():
                raise EnvBuildStopped("stopped during the environment build")
            time.sleep(POLL_SECONDS)
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    if process.returncode != 0:
        raise EnvBuildError(f"{cmd[2] if len(cmd) > 2 else cmd[0]} exited with code "
                            f"{process.returncode}")


def _write_marker(env_dir: Path, pip: list[str]) -> None:
    tmp = env_dir / (MARKER + ".tmp")
    tmp.write_text(json.dumps({"pip": pip, "built_at": time.time()}))
    os.replace(tmp, env_dir / MARKER)
