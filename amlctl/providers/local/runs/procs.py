"""Process facts and signals the run machinery relies on: liveness, process groups, reaping.

Each task runs in its own session, so its process group holds everything it started; stopping
a task means signalling the group. A process that has exited but was not reaped (a zombie, as
orphans become where nothing reaps them) counts as gone. /proc is used where it exists (Linux);
elsewhere the plain signal-0 checks apply.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterable
from pathlib import Path

_PROC = Path("/proc")


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name: [state, ppid, pgrp, ...]."""
    try:
        raw = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2:].split()


def alive(pid: int | None, *markers: str) -> bool:
    """Whether `pid` is a live (not zombie) process; with `markers`, one whose command line
    contains every one of them, so a recycled pid is not mistaken for the process we started."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return False  # another user's process: not one of ours
    if not _PROC.is_dir():
        return True
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    if not markers:
        return True
    try:
        cmdline = (_PROC / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ")
    except OSError:
        return False
    if not cmdline:
        return True  # mid-exec (a process just spawned reads empty for a moment): trust it
    return all(marker.encode() in cmdline for marker in markers)


def start_time(pid: int | None) -> int | None:
    """When `pid` started, in clock ticks since boot (Linux; None elsewhere or if gone).

    With the pid it identifies one process for good: a recycled pid has another start time.
    """
    if not pid:
        return None
    fields = _stat_fields(pid)
    if fields is None or len(fields) < 20:
        return None
    return int(fields[19])


def groups_with_env(name: str, value: str) -> list[int]:
    """Process groups of the live processes started with `name=value` in their environment
    (Linux; [] elsewhere). Our own group is never among them."""
    if not _PROC.is_dir():
        return []
    own = os.getpgrp()
    found: set[int] = set()
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        pid = int(entry.name)
        fields = _stat_fields(pid)
        if not fields or fields[0] in ("Z", "X") or not environ_has(pid, name, value):
            continue
        if int(fields[2]) != own:
            found.add(int(fields[2]))
    return sorted(found)


def environ_has(pid: int, name: str, value: str) -> bool:
    """Whether process `pid` was started with `name=value` in its environment (Linux; False
    elsewhere or when it cannot be read)."""
    try:
        raw = (_PROC / str(pid) / "environ").read_bytes()
    except OSError:
        return False
    return f"{name}={value}".encode() in raw.split(b"\0")


def group_members(pgid: int) -> list[int]:
    """Live processes of a process group (Linux); elsewhere [pgid] while the group exists."""
    if not _PROC.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members = []
    for entry in _PROC.iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def children(pid: int) -> list[int]:
    """Direct children of `pid`, zombies included (Linux only; [] elsewhere)."""
    if not _PROC.is_dir():
        return []
    found = []
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields and fields[1] == str(pid):
                found.append(int(entry.name))
    return found


def signal_group(pgid: int, sig: int) -> None:
    """Send `sig` to a process group; a group that is already gone is fine."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_groups(pgids: Iterable[int], grace_seconds: float) -> None:
    """SIGTERM each group, wait up to `grace_seconds` for them to go, then SIGKILL the rest.

    For groups whose leader is not our child (orphans of a dead supervisor); a supervisor
    stopping its own children must also reap them (see the supervisor).
    """
    groups = [g for g in pgids if group_members(g)]
    for pgid in groups:
        signal_group(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace_seconds
    while groups and time.monotonic() < deadline:
        time.sleep(0.05)
        groups = [g for g in groups if group_members(g)]
    for pgid in groups:
        signal_group(pgid, signal.SIGKILL)


def become_subreaper() -> bool:
    """Ask Linux to reparent our orphaned descendants to us rather than to init, so processes
    a task leaves behind can still be found and stopped. False where unsupported."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_child_subreaper = 36
        return libc.prctl(pr_set_child_subreaper, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def reap(pids: Iterable[int]) -> None:
    """Collect the exit status of finished children (not Popen-owned ones: that would hide
    their exit codes from Popen)."""
    for pid in pids:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
