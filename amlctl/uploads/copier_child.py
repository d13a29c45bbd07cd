"""The program of a copier's child process (see `copier`): it copies the batches it is sent
until its socket closes.

Run as `python -I -S copier_child.py FD`. Every helper started pays for what this file
imports, so it imports four modules of the standard library and no more: `socket` and
`signal` would cost ~8 ms a helper (they wrap their constants in enums), so the socket is
read through `_socket`, their C core, and the child handles no signal (it runs in a
process group of its own: a Ctrl-C at the terminal is the parent's to handle). `copier`
imports it too, for MAX_MESSAGE.
"""

from __future__ import annotations

import _socket
import hashlib
import marshal
import os
import sys

# A batch's message stays well under a socket pair's buffer (SOCK_SEQPACKET: one message,
# one send): callers split batches whose paths are longer than this.
MAX_MESSAGE = 64 << 10
_MAX_FOLDERS = 256  # descriptors a batch may carry
_CHUNK = 1 << 20
_READ = os.O_RDONLY | os.O_CLOEXEC
_WRITE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | os.O_NOFOLLOW


def serve(fd: int) -> None:
    """Copy the batches received on the socket fd until it closes. A batch's descriptors
    are its folders, then the folder its srcs are relative to."""
    conn = _socket.socket(fileno=fd)
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    buffers = [buf]  # readv's list, made once
    room = _socket.CMSG_SPACE(_MAX_FOLDERS * 4)
    while True:
        try:
            data, ancillary, _, _ = conn.recvmsg(MAX_MESSAGE * 2, room)
        except ConnectionError:
            return
        if not data:
            return
        folders = _descriptors(ancillary)
        answers: list[tuple[object, ...]] = []
        try:
            source = folders[-1]
            for index, name, src in marshal.loads(data):
                answer = _copy_one(folders[index], name, src, source, buffers, view)
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


def _descriptors(ancillary: list[tuple[int, int, bytes]]) -> list[int]:
    """The descriptors passed along with a message (SCM_RIGHTS), in order."""
    out: list[int] = []
    for level, kind, data in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            out += memoryview(data)[:len(data) - len(data) % 4].cast("i")
    return out


def _copy_one(folder: int, name: str, src: str, source: int, buf: list[bytearray],
              view: memoryview) -> tuple[object, ...]:
    try:
        fin = os.open(src, _READ, dir_fd=source)
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
            try:  # noqa: SIM105 - contextlib would be one more import for every helper
                os.unlink(name, dir_fd=folder)
            except OSError:
                pass
            return (exc.errno or 0, exc.strerror or str(exc), in_source)
        os.close(out)
        return (digest.hexdigest(), size,
                (end, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev),
                (wt.st_size, wt.st_mtime_ns, wt.st_ctime_ns, wt.st_ino, wt.st_dev))
    finally:
        os.close(fin)


if __name__ == "__main__":
    serve(int(sys.argv[1]))
