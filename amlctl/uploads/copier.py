"""Copies of many small files by helper processes.

Threads of one interpreter take turns at every system call (each call releases the
interpreter lock, and getting it back waits on the other thread), and copying a small file
is a dozen short calls: two threads copy small files no faster than one. Two processes do,
in about 0.6x the time. So a store writing thousands of small files hands them, a batch at
a time, to a `Copier`: a child process (`python -I -S` running `copier_child.py`: a few
modules of the standard library, no site, no environment) fed over a socket pair.

A batch is a list of `(folder, name, src)` jobs, the descriptors of its folders and that of
the folder the srcs are relative to: the parent opens the folders (never through a link,
see `dirfd`) and passes their descriptors along, so the child only ever writes a new file
(O_EXCL, O_NOFOLLOW) in a folder it was given. For each job the child opens src (relative
to the source folder, as its `src_dir` is walked: a link inside it is followed), takes its
stat, copies it into the new file while hashing it (sha256), and takes the new file's
stat; it answers with one `Copied` per job done, and stops the batch at the first failure,
answering the errno of it (the new file removed). A child that dies mid-batch (killed) may
leave the new file of the job it was on: `copy` then raises `CopierGone` naming the jobs it
did not answer, for the caller to clean.

The child exits when its socket closes: at `close`, or when the parent dies. It runs in a
process group of its own, so a Ctrl-C at the terminal reaches the parent only, which
decides what stops (the batch under way ends, then the child sees its socket closed).
"""

from __future__ import annotations

import marshal
import sys
from pathlib import Path
from typing import NamedTuple

from amlctl.uploads.copier_child import MAX_MESSAGE

# The program the child runs (see module doc).
_CHILD = str(Path(__file__).with_name("copier_child.py"))

# index of its folder's descriptor, new file's name, src (relative to the source folder)
Job = tuple[int, str, str]
_Stat = tuple[int, int, int, int, int]  # size, mtime_ns, ctime_ns, ino, dev


def available() -> bool:
    """Whether helpers can run here: folder descriptors passed over a socket (Linux)."""
    import socket

    return hasattr(socket, "send_fds") and sys.platform.startswith("linux")


class Copied(NamedTuple):
    """One job done: the bytes' sha256 and size, src's stat when opened, the new file's."""

    sha256: str
    size: int
    source: _Stat
    written: _Stat


class CopyFailed(NamedTuple):
    """The job a batch stopped at: errno and message; `in_source` if src was the problem."""

    errno: int
    strerror: str
    in_source: bool


class CopierGone(OSError):
    """The child process ended mid-batch; `unanswered` are the jobs it did not answer."""

    def __init__(self, unanswered: list[Job]) -> None:
        super().__init__("the copy helper process ended unexpectedly")
        self.unanswered = unanswered


class Copier:
    """One child process copying batches of files (see module doc)."""

    def __init__(self) -> None:
        import socket  # here, as below: a plan imports this module, and copies nothing
        import subprocess

        self.alive = True  # False once it failed: closed, never given a batch again
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-I", "-S", _CHILD, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL, process_group=0)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._socket = ours

    def copy(self, jobs: list[Job], folders: list[int], source: int
             ) -> list[Copied | CopyFailed]:
        """Run one batch: jobs write into `folders` (by index), their srcs relative to the
        folder `source`; one answer per job done, the last a CopyFailed if one failed."""
        import socket

        try:
            socket.send_fds(self._socket, [marshal.dumps(jobs)], [*folders, source])
            answer = self._socket.recv(MAX_MESSAGE + len(jobs) * 512)
        except OSError:
            answer = b""
        if not answer:
            raise CopierGone(jobs)
        new = tuple.__new__  # answers come by the thousand: the named tuples' own __new__ is
        # a Python function, ~5x slower
        return [new(Copied, item) if len(item) == 4 else new(CopyFailed, item)
                for item in marshal.loads(answer)]

    def stop(self) -> None:
        """Tell the child to end (it exits on the closed socket); no more batches."""
        self.alive = False
        self._socket.close()

    def close(self) -> None:
        """Stop the child and wait for it."""
        import subprocess

        self.stop()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
