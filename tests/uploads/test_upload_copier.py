"""Copies by helper processes (`copier`): real child processes writing real files, through
the folder descriptors they are given; and FolderFileStore handing them its batches."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from upload_helpers import opened_files, tree, write

from amlctl.uploads import (
    FolderFileStore,
    HashCache,
    UploadError,
    apply_sync,
    copier_child,
    plan_sync,
)
from amlctl.uploads.copier import Copied, Copier, CopierGone, CopyFailed
from amlctl.uploads.folder_store import COPIER_MIN_FILES


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def stat_of(path: Path) -> tuple[int, int, int, int, int]:
    st = os.stat(path)
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


@pytest.fixture
def copier() -> object:
    helper = Copier()
    yield helper
    helper.close()


def test_a_helper_copies_into_the_folders_it_is_given(tmp_path: Path, copier: Copier) -> None:
    files = {"a.bin": os.urandom(3000), "b.bin": b"", "sub/c.bin": os.urandom(3 << 20)}
    write(tmp_path / "src", files)
    out1, out2 = tmp_path / "out1", tmp_path / "out2"
    out1.mkdir()
    out2.mkdir()
    fds = [os.open(out1, os.O_RDONLY | os.O_DIRECTORY), os.open(out2, os.O_RDONLY | os.O_DIRECTORY)]
    source = os.open(tmp_path / "src", os.O_RDONLY | os.O_DIRECTORY)
    try:
        answers = copier.copy([(0, "a.bin", "a.bin"),
                               (1, "b-new.bin", "b.bin"),
                               (1, "c.bin", "sub/c.bin")], fds, source)
    finally:
        for fd in (*fds, source):
            os.close(fd)
    assert tree(out1) == {"a.bin": files["a.bin"]}
    assert tree(out2) == {"b-new.bin": b"", "c.bin": files["sub/c.bin"]}
    assert answers == [
        Copied(sha(files["a.bin"]), 3000, stat_of(tmp_path / "src/a.bin"), stat_of(out1 / "a.bin")),
        Copied(sha(b""), 0, stat_of(tmp_path / "src/b.bin"), stat_of(out2 / "b-new.bin")),
        Copied(sha(files["sub/c.bin"]), 3 << 20, stat_of(tmp_path / "src/sub/c.bin"),
               stat_of(out2 / "c.bin")),
    ]


def test_a_helper_runs_apart_from_the_terminal_and_imports_little(tmp_path: Path,
                                                                  copier: Copier) -> None:
    """Its own process group: a Ctrl-C at the terminal is the parent's to handle. And every
    helper started pays for its imports: none of amlctl, none of the heavier standard
    modules (socket and signal build enums)."""
    assert os.getpgid(copier._process.pid) == copier._process.pid != os.getpgrp()
    reader, writer = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    writer.close()  # the child sees its socket closed at once, and exits
    with reader:
        run = subprocess.run([sys.executable, "-I", "-S", "-X", "importtime", copier_child.__file__,
                              str(reader.fileno())], pass_fds=(reader.fileno(),),
                             capture_output=True, text=True, check=True)
    imported = {line.split("|")[-1].strip() for line in run.stderr.splitlines()[1:]}
    assert {"hashlib", "marshal", "_socket"} <= imported
    assert not imported & {"socket", "signal", "enum", "typing", "contextlib", "amlctl"}


def test_a_batch_stops_at_a_taken_name_or_a_missing_source(tmp_path: Path,
                                                           copier: Copier) -> None:
    write(tmp_path / "src", {"a": "a", "b": "b"})
    out = tmp_path / "out"
    write(out, {"taken": "keep me"})
    secret = tmp_path / "secret"
    secret.write_text("not to be written")
    (out / "link").symlink_to(secret)
    fd = os.open(out, os.O_RDONLY | os.O_DIRECTORY)
    source = os.open(tmp_path / "src", os.O_RDONLY | os.O_DIRECTORY)
    try:
        taken = copier.copy([(0, "new-a", "a"), (0, "taken", "b"), (0, "never", "b")], [fd],
                            source)
        linked = copier.copy([(0, "link", "a")], [fd], source)
        missing = copier.copy([(0, "from-nothing", "gone")], [fd], source)
    finally:
        os.close(fd)
        os.close(source)
    assert isinstance(taken[0], Copied)
    assert taken[1:] == [CopyFailed(errno.EEXIST, os.strerror(errno.EEXIST), False)]
    assert linked == [CopyFailed(errno.EEXIST, os.strerror(errno.EEXIST), False)]
    assert missing == [CopyFailed(errno.ENOENT, os.strerror(errno.ENOENT), True)]
    assert (out / "taken").read_text() == "keep me"
    assert secret.read_text() == "not to be written"
    assert sorted(os.listdir(out)) == ["link", "new-a", "taken"]


def test_a_helper_killed_is_reported_with_the_jobs_it_did_not_answer(
        tmp_path: Path, copier: Copier) -> None:
    write(tmp_path / "src", {"a": "a"})
    os.kill(copier._process.pid, signal.SIGKILL)
    copier._process.wait()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with pytest.raises(CopierGone) as gone:
            copier.copy([(0, "x", "src/a")], [fd], fd)
    finally:
        os.close(fd)
    assert gone.value.unanswered == [(0, "x", "src/a")]


def test_a_helper_exits_when_closed(copier: Copier) -> None:
    process = copier._process
    copier.close()
    assert process.returncode == 0


def many_files(count: int) -> dict[str, bytes]:
    return {f"d{n % 7}/f{n:05d}.bin": os.urandom(50 + n % 300) for n in range(count)}


def test_a_first_upload_of_thousands_of_files_is_copied_by_helpers(tmp_path: Path) -> None:
    files = many_files(COPIER_MIN_FILES + 50)
    files["d1/mid.bin"] = os.urandom(2 << 20)  # batched, through a temp file of the helper's
    files["d2/big.bin"] = os.urandom(5 << 20)  # a task of its own, copied in this process
    src = tmp_path / "src"
    write(src, files)
    datastore = tmp_path / "ds"
    root = datastore / "target"
    # racy window 0: the entries recorded for files just written are trusted at once
    with HashCache(tmp_path / "cache.db", racy_window_ns=0) as cache, FolderFileStore(
            root, tmp_path / "index.db", within=datastore) as store:
        plan = plan_sync(src, store, cache=cache)
        before = set(_children_of(os.getpid()))  # other tests' (a session's emulator)
        with opened_files() as opened:
            result = apply_sync(plan, src, store, cache=cache)
        # the sync's flush ended the helpers
        assert set(_children_of(os.getpid())) <= before
    # Every file in place, with the hash of its bytes; none of them was opened by this
    # process: the helpers copied them.
    assert tree(root) == files
    assert {f.relpath: f.sha256 for f in result.sent} == {p: sha(d) for p, d in files.items()}
    assert [p for p in opened if p.startswith(f"{src}/")] == [f"{src}/d2/big.bin"]
    # The index rows and the hash cache entries are right: a new plan has nothing to do
    # and reads no file.
    with HashCache(tmp_path / "cache.db", racy_window_ns=0) as cache, FolderFileStore(
            root, tmp_path / "index.db", within=datastore) as store, opened_files() as opened:
        again = plan_sync(src, store, cache=cache)
    assert (again.add, again.change, again.unchanged) == ((), (), len(files))
    assert not [p for p in opened if p.startswith((f"{src}/", f"{datastore}/"))]


def _children_of(pid: int) -> list[int]:
    """The child processes of every thread of pid (Linux)."""
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(FileNotFoundError):  # a thread that just ended
            out += [int(p) for p in (task / "children").read_text().split()]
    return out


def test_a_batch_puts_a_file_sent_twice_last_wins_and_stops_where_a_parent_is_a_file(
        tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"x/same": "first", "blocked/inside": "third", "x/after": "fourth"})
    datastore = tmp_path / "ds"
    write(datastore / "target", {"blocked": "a file"})
    store = FolderFileStore(datastore / "target", tmp_path / "index.db", within=datastore)
    store.prepare(COPIER_MIN_FILES)
    first, _ = store.put_files_stat(str(src), [("x/same", 5)])
    (src / "x/same").write_text("second")  # sent again before the commit: its name is taken
    done, failure = store.put_files_stat(str(src), [
        ("x/same", 6), ("blocked/inside", 5), ("x/after", 6)])
    store.close()
    assert [remote.sha256 for remote, _ in first + done] == [sha(b"first"), sha(b"second")]
    assert isinstance(failure, UploadError)
    assert "blocked/inside: a parent of it is a file" in str(failure)
    assert tree(datastore / "target") == {"blocked": b"a file", "x/same": b"second"}


def test_a_batch_stops_at_a_folder_that_is_a_link_or_a_bad_path(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"a/ok": "first", "a/never": "never", "linked/f": "not through the link"})
    outside = tmp_path / "outside"
    outside.mkdir()
    datastore = tmp_path / "ds"
    (datastore / "target").mkdir(parents=True)
    (datastore / "target" / "linked").symlink_to(outside)
    for relpath, message in (("linked/f", "linked"), ("../escape", "not a relative path")):
        store = FolderFileStore(datastore / "target", tmp_path / "index.db", within=datastore)
        store.prepare(COPIER_MIN_FILES)
        done, failure = store.put_files_stat(str(src), [("a/ok", 5), (relpath, 5),
                                                        ("a/never", 5)])
        store.close()
        assert len(done) == 1
        assert isinstance(failure, UploadError)
        assert message in str(failure)
    assert list(outside.iterdir()) == []
    assert tree(datastore / "target") == {"a/ok": b"first"}


def test_a_batch_whose_source_folder_is_gone_says_so_file_by_file(tmp_path: Path) -> None:
    datastore = tmp_path / "ds"
    store = FolderFileStore(datastore / "target", tmp_path / "index.db", within=datastore)
    store.prepare(COPIER_MIN_FILES)
    done, failure = store.put_files_stat(str(tmp_path / "gone"), [("a", 1), ("b", 1)])
    store.close()
    assert done == []
    assert isinstance(failure, FileNotFoundError)
    assert failure.filename == str(tmp_path / "gone" / "a")


def test_a_source_is_read_to_its_end_whatever_its_stat_said(tmp_path: Path,
                                                            copier: Copier) -> None:
    """A pipe's stat says 0 bytes: its bytes are read until it closes."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    pieces = [b"a" * 10, b"b" * 70000, b"c" * 5]

    def feed() -> None:
        with open(fifo, "wb") as pipe:
            for piece in pieces:
                pipe.write(piece)
                pipe.flush()

    writer = threading.Thread(target=feed)
    writer.start()
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        [answer] = copier.copy([(0, "copy", "fifo")], [fd], fd)
    finally:
        os.close(fd)
        writer.join()
    whole = b"".join(pieces)
    assert isinstance(answer, Copied)
    assert (answer.sha256, answer.size) == (sha(whole), len(whole))
    assert (tmp_path / "copy").read_bytes() == whole
