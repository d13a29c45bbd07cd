"""Streamed hashing and atomic file writes, in fixed-size chunks (memory flat with size).

A write is two steps, so that many small files can share one flush to disk:
1. `write_temp(src, folder)`: the bytes go to a new temp file in the destination folder,
   named `TEMP_PREFIX<pid>-<random>`, hashed (sha256) while copied, so src is read once;
2. `make_durable(folder, temps)` then `os.replace(temp, dest)`: the data reaches the disk
   (an fsync per file for a few files, else one syncfs of the filesystem on Linux) before
   any rename; then `make_durable(folder, [], folders)` makes the renames durable.
`write_atomic(src, dest)` does both for one file, with a plain fsync.

So a reader sees either the old dest or the complete new one, never a part, even after a
power cut; a process killed midway leaves at most temp files, which no listing shows and
`remove_stale_temp` deletes once their writer is dead.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import itertools
import os
import secrets
import sys
import threading
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from amlctl.uploads.model import FileStat

CHUNK_SIZE = 1 << 20  # 1 MiB: one buffer per worker thread, whatever the file size
TEMP_PREFIX = ".amlctl-tmp-"
_READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC

_buffers = threading.local()  # one CHUNK_SIZE buffer per thread, reused file after file
_names = types.SimpleNamespace(pid=0, token="")  # this process's, for temp names
# getpid is a system call: asked once, again in a forked child
os.register_at_fork(after_in_child=lambda: setattr(_names, "pid", 0))
_counter = itertools.count()


@dataclass(frozen=True, slots=True)
class Hashed:
    """A file's sha256 and size as read, and its stat when it was opened."""

    sha256: str
    size: int
    stat: FileStat


def hash_file(path: str | Path) -> Hashed:
    """sha256 of a file, streamed in CHUNK_SIZE reads."""
    return hash_fd(os.open(path, _READ_FLAGS))


def hash_fd(fd: int) -> Hashed:
    """sha256 of an open file (read from its current offset), streamed; closes fd."""
    try:
        stat = FileStat.of(os.fstat(fd))
        digest, size = _pump(fd, None)
    finally:
        os.close(fd)
    return Hashed(digest, size, stat)


def write_temp(
    src: str | Path, folder: str, *, fsync: bool = False, dir_fd: int | None = None
) -> tuple[str, Hashed]:
    """Copy src into a new temp file in `folder` (which must exist), hashing as it goes.

    Returns the temp file's path; with `dir_fd` (the folder's open descriptor, `folder`
    then only names it) the temp is made relative to it and its bare name is returned.
    On any error the temp file is removed and the error propagates.
    """
    tmp = temp_name() if dir_fd is not None else os.path.join(folder, temp_name())
    fin, stat = open_source(src)
    try:
        hashed, _ = copy_into(fin, stat, tmp, dir_fd, fsync=fsync)
    finally:
        os.close(fin)
    return tmp, hashed


def open_source(src: str | Path) -> tuple[int, FileStat]:
    """src opened for reading, and its stat taken once open (before any byte is read)."""
    fin = os.open(src, _READ_FLAGS)
    try:
        return fin, FileStat.of(os.fstat(fin))
    except BaseException:
        os.close(fin)
        raise


def copy_into(fin: int, stat: FileStat, name: str, dir_fd: int | None, *,
              fsync: bool = False, stat_written: bool = False
              ) -> tuple[Hashed, os.stat_result | None]:
    """Copy the open file fin (its `stat` from `open_source`) into a new file `name` (of
    the folder dir_fd, if given), hashing as it goes; never through a link, never over an
    existing file (FileExistsError). Returns the hash and, with `stat_written`, the new
    file's stat once written. On any error the new file is removed and the error
    propagates; fin stays open."""
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW,
                 0o644, dir_fd=dir_fd)
    try:
        try:
            digest, size = _pump(fin, fd)
            if fsync:
                os.fsync(fd)
            written = os.fstat(fd) if stat_written else None
        finally:
            os.close(fd)
    except BaseException:
        _unlink(name, dir_fd)
        raise
    return Hashed(digest, size, stat), written


def write_atomic(src: str | Path, dest: Path) -> Hashed:
    """Copy src to dest atomically and durably (temp file, fsync, rename); dest's folders
    are created."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp, hashed = write_temp(src, str(dest.parent), fsync=True)
    try:
        os.replace(tmp, dest)
    except BaseException:
        _unlink(tmp)
        raise
    return hashed


# Up to this many files (and folders), an fsync each; beyond, one syncfs of the filesystem.
FSYNC_MAX = 16


def make_durable(folder: str | Path, files: Sequence[str | Path],
                 folders: Sequence[str | Path] = ()) -> None:
    """Put the data of `files`, and the entries of `folders` (renames done in them), on
    disk; all of them on folder's filesystem.

    One syncfs(2) costs one journal commit whatever the number of files, where an fsync
    per file costs one each (milliseconds apiece on a virtual disk); but syncfs also waits
    for every other writer's dirty data on that filesystem, which on a busy machine can take
    most of a second. So a few files get an fsync each, many files one syncfs.
    """
    if len(files) + len(folders) > FSYNC_MAX and sync_filesystem(folder):
        return
    # Gone since (a folder emptied and removed, a temp whose folder was swapped): nothing to
    # sync, and the rename that follows reports what happened. A link is never followed.
    for path in (*files, *folders):
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            _fsync(path)


def sync_filesystem(folder: str | Path) -> bool:
    """syncfs(2) of folder's filesystem: every write made to it is on disk on return.
    False where there is no syncfs (not Linux): nothing done."""
    syncfs = _syncfs()
    if syncfs is None:
        return False
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        if syncfs(fd) != 0:
            import ctypes

            err = ctypes.get_errno()
            raise OSError(err, f"syncfs failed: {os.strerror(err)}", str(folder))
    finally:
        os.close(fd)
    return True


def _fsync(path: str | Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a link now stands there: not ours to sync
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@functools.cache
def _syncfs() -> Callable[[int], int] | None:
    if not sys.platform.startswith("linux"):
        return None
    import ctypes  # here: only a commit of many files needs it, and it is slow to import
    try:
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int]
    fn.restype = ctypes.c_int
    return fn  # type: ignore[no-any-return]


def temp_name() -> str:
    """A fresh temp file name owned by this process: prefix, pid, random, counter."""
    if not _names.pid:  # first call, or a forked child (reset below): new random part
        _names.pid, _names.token = os.getpid(), secrets.token_hex(4)
    return f"{TEMP_PREFIX}{_names.pid}-{_names.token}-{next(_counter)}"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of ours (never a real file of a store)."""
    return name.startswith(TEMP_PREFIX)


def remove_stale_temp(path: Path | str, dir_fd: int | None = None) -> bool:
    """Delete a temp file, or a temp folder with all it holds, whose writing process is
    gone; True if it was deleted.

    The writer's pid is in the name. A temp of a live process (another apply, or this one)
    is left alone. With `dir_fd`, path is a name in that folder. On a folder shared between
    machines, pids mean nothing across them; a wrongly removed temp makes that writer's
    rename fail, never a corrupt file.
    """
    name = os.path.basename(path)
    pid_text = name[len(TEMP_PREFIX) :].split("-", 1)[0]
    if pid_text.isdigit() and _alive(int(pid_text)):
        return False
    try:
        os.unlink(path, dir_fd=dir_fd)
    except FileNotFoundError:
        return False
    except (IsADirectoryError, PermissionError):
        # a temp folder (a store's stage, see folder_store), emptied without following links
        try:
            fd = os.open(path, _DIR_FLAGS, dir_fd=dir_fd)
        except (FileNotFoundError, NotADirectoryError):
            return False
        try:
            _empty_folder(fd)
        finally:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.rmdir(path, dir_fd=dir_fd)
    return True


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _empty_folder(fd: int) -> None:
    """Delete everything in the open folder fd, never following a link (a link is removed,
    not entered)."""
    for entry in list(os.scandir(fd)):
        if entry.is_dir(follow_symlinks=False):
            try:
                child = os.open(entry.name, _DIR_FLAGS, dir_fd=fd)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                _empty_folder(child)
            finally:
                os.close(child)
            with contextlib.suppress(FileNotFoundError):
                os.rmdir(entry.name, dir_fd=fd)
        else:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.name, dir_fd=fd)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return True


def _pump(src: int, fd: int | None) -> tuple[str, int]:
    """Read the descriptor src to its end in CHUNK_SIZE pieces, hashing, and writing to fd
    if given."""
    digest = hashlib.sha256()
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    total = 0
    buffers, readv = [buf], os.readv  # raw reads into one reused buffer: no copy, no object
    while True:
        n = readv(src, buffers)
        if not n:
            break
        chunk = view[:n]
        digest.update(chunk)
        if fd is not None:
            while chunk:
                written = os.write(fd, chunk)
                chunk = chunk[written:]
        total += n
    return digest.hexdigest(), total


def _unlink(path: str, dir_fd: int | None = None) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path, dir_fd=dir_fd)
