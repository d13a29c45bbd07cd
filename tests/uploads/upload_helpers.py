"""Helpers for the upload tests: real files in tmp_path, real stores, and a record of which
files the process opens (a Python audit hook, so no code of ours is replaced)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from amlctl.uploads import (
    FolderFileStore,
    HashCache,
    SyncPlan,
    SyncResult,
    apply_sync,
    plan_sync,
)

_recorders: list[list[str]] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    # "amlctl.open": a datastore file read through a folder descriptor, by its full path.
    if event in ("open", "amlctl.open") and _recorders and args and args[0] is not None:
        if event == "open" and len(args) > 2 and isinstance(args[2], int) and (
                args[2] & os.O_DIRECTORY):
            return  # a folder opened to be listed: no file content read
        path = args[0]
        if isinstance(path, int):
            return
        name = os.fsdecode(path) if isinstance(path, bytes | os.PathLike) else str(path)
        for recorder in _recorders:
            recorder.append(os.path.abspath(name))


sys.addaudithook(_audit)


@contextmanager
def killed_after(child: subprocess.Popen[bytes]) -> Iterator[None]:
    """Run the block, then kill child (SIGKILL) and reap it; killed and reaped too when
    the block fails."""
    try:
        yield
        child.send_signal(signal.SIGKILL)
        child.wait()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


@contextmanager
def opened_files() -> Iterator[list[str]]:
    """Collect the absolute paths of every file opened (by any thread) inside the block."""
    recorder: list[str] = []
    _recorders.append(recorder)
    try:
        yield recorder
    finally:
        _recorders.remove(recorder)


def write(root: Path, files: dict[str, bytes | str]) -> None:
    """Create files (and their folders) under root."""
    for relpath, content in files.items():
        path = root / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode() if isinstance(content, str) else content)


def tree(root: Path) -> dict[str, bytes]:
    """Every regular file under root (temp files included), relpath -> bytes."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


class Env:
    """A src folder, a datastore folder with its index, and a hash cache, all in tmp_path."""

    def __init__(self, base: Path, racy_window_ns: int = 0) -> None:
        self.src = base / "src"
        self.dst = base / "datastore" / "target"
        self.index = base / "state" / "index.db"
        self.cache_db = base / "state" / "hashcache.db"
        self.racy_window_ns = racy_window_ns
        self.src.mkdir(parents=True)

    def store(self) -> FolderFileStore:
        return FolderFileStore(self.dst, self.index)

    def cache(self) -> HashCache:
        return HashCache(self.cache_db, racy_window_ns=self.racy_window_ns)

    def plan(self, exclude: tuple[str, ...] = (), delete_extra: bool = False, *,
             listing: bool = False, resend_all: bool = False) -> SyncPlan:
        """A plan given the store itself, as amlctl plans (so the memo of a plan that found
        nothing to do is used and kept); `listing`: given the store's listing instead."""
        with self.store() as store, self.cache() as cache:
            return plan_sync(self.src, store.list_files() if listing else store, exclude,
                             delete_extra, cache, resend_all=resend_all)

    def sync(self, exclude: tuple[str, ...] = (), delete_extra: bool = False) -> SyncResult:
        with self.store() as store, self.cache() as cache:
            plan = plan_sync(self.src, store, exclude, delete_extra, cache)
            return apply_sync(plan, self.src, store, cache=cache)


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    """Poll `condition` until it holds (AssertionError after `timeout` seconds)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.005)
