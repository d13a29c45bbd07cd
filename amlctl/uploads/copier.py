"""Copies of many small files by helper processes.

Threads of one interpreter take turns at every system call (each call releases the
interpreter lock, and getting it back waits on the other thread), and copying a small file
is a dozen short calls: two threads copy small files no faster than one. Two processes do,
in about 0.6x the time. So a store writing thousands of small files hands them, a batch at
a time, to a `Copier`: a child process (`python -I -S` running this file: the standard
library only, no site, no environment) fed over a socket pair.

A batch is a list of `(folder, name, src)` jobs and the descriptors of its folders: the
parent opens the folders (never through a link, see `dirfd`) and passes their descriptors
along, so the child only ever writes a new file (O_EXCL, O_NOFOLLOW) in a folder it was
given. For each job the child opens src, takes its stat, copies it into the new file while
hashing it (sha256), and takes the new file's stat; it answers with one `Copied` per job
done, and stops the batch at the first failure, answering the errno of it (the new file
removed). A child that dies mid-batch (killed) may leave the new file of the job it was on:
`copy` then raises `CopierGone` naming the jobs it did not answer, for the caller to clean.

The child exits when its socket closes: at `close`, or when the parent dies.
"""

from __future__ import annotations

import contextlib
import hashlib
import marshal
import os
import signal
import sys
from typing import NamedTuple

# A batch's message stays well under a socket pair's buffer (SOCK_SEQPACKET: one message,
# one send): callers split batches whose paths are longer than this.
MAX_MESSAGE = 64 << 10
_CHUNK = 1 << 20
_READ = os.O_RDONLY | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW

Job = tuple[int, str, str]  # index of its folder's descriptor, new file's name, src path
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
                [sys.executable, "-I", "-S", __file__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        self._socket = ours

    def copy(self, jobs: list[Job], folders: list[int]) -> list[Copied | CopyFailed]:
        """Run one batch; one answer per job done, the last a CopyFailed if one failed."""
        import socket

        try:
            socket.send_fds(self._socket, [marshal.dumps(jobs)], folders)
            answer = self._socket.recv(MAX_MESSAGE + len(jobs) * 512)
        except OSError:
            answer = b""
        if not answer:
            raise CopierGone(jobs)
        results = [Copied(*item) if len(item) == 4 else CopyFailed(*item)
                   for item in marshal.loads(answer)]
        return results

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


def _serve(fd: int) -> None:
    """The child: copy the batches received on socket fd until it closes."""
    import socket

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides what Ctrl-C stops
    conn = socket.socket(fileno=fd)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    buffers = [buf]  # readv's list, made once
    while True:
        try:
            data, folders, _, _ = socket.recv_fds(conn, MAX_MESSAGE * 2, 256)
        except ConnectionError:
            return
        if not data:
            return
        answers: list[tuple[object, ...]] = []
        try:
            for index, name, src in marshal.loads(data):
                answer = _copy_one(folders[index], name, src, buffers, view)
                answers.append(answer)
                if len(answer) != 4:
                    break
        finally:
            for folder in folders:
                os.close(folder)
        try:
            conn.send(marshal.dumps(answers))
        except OSError:
            return


def _copy_one(folder: int, name: str, src: str, buf: list[bytearray], view: memoryview
              ) -> tuple[object, ...]:
    try:
        fin = os.open(src, _READ)
    except OSError as exc:
        return (exc.errno or 0, exc.strerror or str(exc), True)
    try:
        st = os.fstat(fin)
        try:
            out = os.open(name, _WRITE, 0o644, dir_fd=folder)
        except OSError as exc:
            return (exc.errno or 0, exc.strerror or str(exc), False)
        in_source = True
        try:
            digest = hashlib.sha256()
            size = 0
            end = st.st_size
            while True:
                n = os.readv(fin, buf)
                if not n:
                    break
                chunk = view[:n]
                digest.update(chunk)
                in_source = False
                while chunk:
                    chunk = chunk[os.write(out, chunk):]
                size += n
                # a short read that reaches the size the stat gave is the end: a file still
                # growing is read on (its stat moved: the next plan sends it again anyway)
                if size == end and n < _CHUNK:
                    break
                in_source = True
            in_source = False
            wt = os.fstat(out)
        except OSError as exc:
            os.close(out)
            with contextlib.suppress(OSError):
                os.unlink(name, dir_fd=folder)
            return (exc.errno or 0, exc.strerror or str(exc), in_source)
        os.close(out)
        return (digest.hexdigest(), size,
                (end, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev),
                (wt.st_size, wt.st_mtime_ns, wt.st_ctime_ns, wt.st_ino, wt.st_dev))
    finally:
        os.close(fin)


if __name__ == "__main__":
    _serve(int(sys.argv[1]))
