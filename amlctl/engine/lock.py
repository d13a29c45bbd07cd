"""One apply or destroy per workspace at a time: an exclusive lock file naming its holder."""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amlctl.errors import LockError, UsageError

LOCK_FILE = "apply.lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_lock(state_dir: Path) -> dict[str, Any] | None:
    """The current holder's record, or None when unlocked."""
    try:
        return json.loads((state_dir / LOCK_FILE).read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return {"id": "unreadable", "host": "?", "pid": 0, "time": 0, "command": "?"}


def _describe(holder: dict[str, Any]) -> str:
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(holder.get("time", 0)))
    text = (f"lock {holder.get('id')} held by {holder.get('command')} (pid {holder.get('pid')} "
            f"on {holder.get('host')}, since {when})")
    if holder.get("host") == socket.gethostname() and not _pid_alive(int(holder.get("pid", 0))):
        text += "; that process is gone, so the lock is stale"
    return text


@contextmanager
def workspace_lock(state_dir: Path, command: str, timeout: float = 0.0) -> Iterator[str]:
    """Hold the lock for the duration; fail fast (or wait up to `timeout` s) if it is taken."""
    state_dir.mkdir(parents=True, exist_ok=True)
    path = state_dir / LOCK_FILE
    lock_id = uuid.uuid4().hex[:12]
    record = {"id": lock_id, "host": socket.gethostname(), "pid": os.getpid(),
              "time": time.time(), "command": command}
    # The record is written aside and hard-linked into place: taking the lock and naming the
    # holder are one atomic step, so a competitor never reads a lock file still empty.
    draft = state_dir / f".{LOCK_FILE}.{lock_id}"
    with open(draft, "w") as handle:
        json.dump(record, handle)
        handle.flush()
        os.fsync(handle.fileno())
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                os.link(draft, path)
                break
            except FileExistsError:
                if time.monotonic() >= deadline:
                    holder = read_lock(state_dir) or {}
                    raise LockError(
                        f"the workspace is locked: {_describe(holder)}. If no apply is "
                        f"running, release it with `amlctl force-unlock {holder.get('id')}`."
                    ) from None
                time.sleep(0.2)
    finally:
        draft.unlink(missing_ok=True)
    try:
        yield lock_id
    finally:
        current = read_lock(state_dir)
        if current and current.get("id") == lock_id:
            path.unlink(missing_ok=True)


def force_unlock(state_dir: Path, lock_id: str) -> dict[str, Any]:
    """Remove the lock if its id matches (the id guards against removing someone else's)."""
    holder = read_lock(state_dir)
    if holder is None:
        raise UsageError("the workspace is not locked")
    if holder.get("id") != lock_id:
        raise UsageError(f"lock id {lock_id!r} does not match the current lock "
                         f"{holder.get('id')!r}")
    (state_dir / LOCK_FILE).unlink(missing_ok=True)
    return holder
