"""One apply or destroy per stack at a time, on the local backend: a kernel lock on a file.

`fcntl.flock` on `<state_dir>/apply.lock`, held open for the whole apply. The kernel drops the
lock when its holder exits however it exits (SIGKILL, SIGTERM, a crash), so a killed apply
never blocks the next one. The file's content names the holder (id, pid, host, command,
time) for the "locked by ..." message; a record left by a dead holder is harmless.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amlctl.errors import LockError, UsageError

LOCK_FILE = "apply.lock"
POLL_SECONDS = 0.2


def holder_record(command: str) -> dict[str, Any]:
    """Who takes a lock: shown to whoever finds it taken."""
    # the host name as socket.gethostname() gives it, without importing socket (its enums
    # cost more than the rest of taking a lock)
    return {"id": uuid.uuid4().hex[:12], "host": os.uname().nodename, "pid": os.getpid(),
            "time": time.time(), "command": command}


def describe(holder: dict[str, Any]) -> str:
    """`lock ID held by COMMAND (pid P on HOST, since TIME)`."""
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(holder.get("time") or 0)))
    return (f"lock {holder.get('id')} held by {holder.get('command')} (pid {holder.get('pid')} "
            f"on {holder.get('host')}, since {when})")


def _read_record(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return {"id": "unreadable", "host": "?", "pid": 0, "time": 0, "command": "?"}
    if not text.strip():
        return None  # released, or its holder is still writing the record
    try:
        record = json.loads(text)
    except ValueError:
        return {"id": "unreadable", "host": "?", "pid": 0, "time": 0, "command": "?"}
    return record if isinstance(record, dict) else None


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def read_lock(state_dir: Path) -> dict[str, Any] | None:
    """The current holder's record, or None when nobody holds the lock."""
    path = state_dir / LOCK_FILE
    if not path.exists():
        return None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if _try_lock(fd):  # free: a record in the file is what a dead holder left
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
    finally:
        os.close(fd)
    return _read_record(path) or {"id": "unknown", "host": "?", "pid": "?", "time": 0,
                                  "command": "another amlctl"}


@contextmanager
def kernel_lock(state_dir: Path, command: str, timeout: float = 0.0,
                record: dict[str, Any] | None = None) -> Iterator[str]:
    """Hold the lock for the duration; fail fast (or wait up to `timeout` s) if it is taken.
    `record` names the holder (default: this process running `command`)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    # O_CLOEXEC: a process the apply starts (a run's supervisor) must not inherit the lock.
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while not _try_lock(fd):
            if time.monotonic() >= deadline:
                holder = _read_record(path) or {"id": "unknown", "command": "another amlctl"}
                raise LockError(
                    f"the workspace is locked: {describe(holder)}. It is released when that "
                    "process ends; wait for it, or pass --lock-timeout SECONDS to wait here."
                )
            time.sleep(POLL_SECONDS)
        record = record or holder_record(command)
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode(), 0)
        try:
            yield str(record["id"])
        finally:
            os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # releases the kernel lock


def force_unlock(state_dir: Path, lock_id: str) -> dict[str, Any]:
    """Clear the holder record left for `lock_id`.

    A kernel lock cannot outlive its holder, so there is never a stale lock to break: when
    the lock is held, its holder is alive and force-unlock refuses; when it is free, only a
    record can be left over, which is cleared here.
    """
    path = state_dir / LOCK_FILE
    holder = _read_record(path)
    live = read_lock(state_dir)
    if live is not None:
        if live.get("id") != lock_id:
            raise UsageError(f"lock id {lock_id!r} does not match the current lock "
                             f"{live.get('id')!r}")
        raise UsageError(
            f"{describe(live)} is held by a running process; a local lock is a kernel lock, "
            "released the moment its holder exits, so stop that process instead")
    if holder is None or holder.get("id") != lock_id:
        raise UsageError("the workspace is not locked (a local lock is a kernel lock: it was "
                         "released when its holder exited)")
    with open(path, "w"):
        pass
    return holder
