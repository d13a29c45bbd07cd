"""Streamed hashing and atomic file writes, in fixed-size chunks (memory flat with size).

Contract of `write_atomic(src, dest)`:
- the bytes go to a temp file in dest's own folder, named `TEMP_PREFIX<pid>-<random>`, are
  hashed (sha256) while copied so src is read once, fsynced, then renamed over dest;
- so a reader sees either the old dest or the complete new one, never a part; a process
  killed midway leaves at most a temp file, which no listing shows and `remove_stale_temp`
  deletes once its writer is dead;
- the folder is not fsynced after the rename: after a power cut the old file may be back,
  which the next sync sees and repairs; it can never be a half-written new one.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from amlctl.uploads.model import FileStat

CHUNK_SIZE = 1 << 20  # 1 MiB: one buffer per worker thread, whatever the file size
TEMP_PREFIX = ".amlctl-tmp-"

_buffers = threading.local()  # one CHUNK_SIZE buffer per thread, reused file after file


@dataclass(frozen=True, slots=True)
class Hashed:
    """A file's sha256 and size as read, and its stat when it was opened."""

    sha256: str
    size: int
    stat: FileStat


def hash_file(path: str | Path) -> Hashed:
    """sha256 of a file, streamed in CHUNK_SIZE reads."""
    with open(path, "rb", buffering=0) as src:
        stat = FileStat.of(os.fstat(src.fileno()))
        digest, size = _pump(src, None)
    return Hashed(digest, size, stat)


def write_atomic(src: str | Path, dest: Path) -> Hashed:
    """Copy src to dest atomically (see module doc); returns the sha256 of what was written.

    dest's parent folders are created. OSError propagates; the temp file is removed then.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / temp_name()
    with open(src, "rb", buffering=0) as fin:
        stat = FileStat.of(os.fstat(fin.fileno()))
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
        try:
            try:
                digest, size = _pump(fin, fd)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, dest)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
    return Hashed(digest, size, stat)


def temp_name() -> str:
    """A fresh temp file name owned by this process."""
    return f"{TEMP_PREFIX}{os.getpid()}-{secrets.token_hex(6)}"


def is_temp_name(name: str) -> bool:
    """Whether a file name is one of ours (never a real file of a store)."""
    return name.startswith(TEMP_PREFIX)


def remove_stale_temp(path: Path) -> bool:
    """Delete a temp file whose writing process is gone; True if it was deleted.

    The writer's pid is in the name. A temp of a live process (another apply, or this one)
    is left alone. On a folder shared between machines, pids mean nothing across them;
    a wrongly removed temp makes that writer's rename fail, never a corrupt file.
    """
    pid_text = path.name[len(TEMP_PREFIX) :].split("-", 1)[0]
    if pid_text.isdigit() and _alive(int(pid_text)):
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


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


def _pump(src: io.FileIO, fd: int | None) -> tuple[str, int]:
    """Read src to its end in CHUNK_SIZE pieces, hashing, and writing to fd if given."""
    digest = hashlib.sha256()
    buf = getattr(_buffers, "buf", None)
    if buf is None:
        buf = _buffers.buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    total = 0
    readinto = src.readinto
    while True:
        n = readinto(buf)
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
