"""FolderFileStore's stage: the files of a many-file upload into a target folder that does
not exist yet are written into a temp-named folder, published by one rename at the commit."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType

import pytest
from upload_helpers import killed_after, opened_files, tree, wait_for, write

from amlctl.uploads import (
    FolderFileStore,
    HashCache,
    RemoteFile,
    UploadError,
    apply_sync,
    plan_sync,
)
from amlctl.uploads import folder_store as folder_store_module
from amlctl.uploads.atomic import TEMP_PREFIX

MiB = 1 << 20

_renames: list[list[tuple[object, ...]]] = []


def _audit(event: str, args: tuple[object, ...]) -> None:
    if event == "os.rename" and _renames:
        for recorder in _renames:
            recorder.append(args)


sys.addaudithook(_audit)


@contextmanager
def renames() -> Iterator[list[tuple[object, ...]]]:
    """Every os.rename/os.replace made (by any thread) inside the block."""
    recorder: list[tuple[object, ...]] = []
    _renames.append(recorder)
    try:
        yield recorder
    finally:
        _renames.remove(recorder)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def small_files(count: int, folders: int = 3) -> dict[str, bytes]:
    return {f"d{n % folders}/f{n:03d}.bin": os.urandom(100 + n) for n in range(count)}


def visible(root: Path) -> dict[str, bytes]:
    """Files a reader finds under their final names: none inside a temp-named folder, none
    temp-named."""
    return {relpath: data for relpath, data in tree(root).items()
            if not any(part.startswith(TEMP_PREFIX) for part in relpath.split("/"))}


def put_all(store: FolderFileStore, src: Path, files: dict[str, bytes]) -> None:
    store.prepare(len(files))
    for relpath in files:
        store.put_file(src / relpath, relpath)


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_new_target_appears_whole_at_the_commit_by_one_rename(tmp_path: Path) -> None:
    files = small_files(40)
    files["big.bin"] = os.urandom(2 * MiB)  # large: through a temp file of its own
    write(tmp_path / "src", files)
    datastore, index = tmp_path / "ds", tmp_path / "index.db"
    root = datastore / "t" / "sub"
    store = FolderFileStore(root, index, within=datastore)
    put_all(store, tmp_path / "src", files)
    # Written, not published: a reader of the datastore folder sees no file, no folder t.
    assert visible(datastore) == {}
    assert not (datastore / "t").exists()
    with FolderFileStore(root, index, within=datastore) as other:
        assert other.list_files() == {}
    with renames() as renamed:
        store.flush()
    assert len(renamed) == 2  # the stage, and the large file's temp
    assert tree(datastore) == {f"t/sub/{p}": data for p, data in files.items()}
    store.close()
    # The index rows written for the staged files still vouch for them: nothing is read.
    with opened_files() as opened, FolderFileStore(root, index, within=datastore) as again:
        listing = again.list_files()
    assert listing == {p: RemoteFile(len(data), sha(data)) for p, data in files.items()}
    assert not [p for p in opened if p.startswith(f"{datastore}/")]


def test_few_files_or_an_existing_target_are_not_staged(tmp_path: Path) -> None:
    files = small_files(40)
    write(tmp_path / "src", files)
    datastore = tmp_path / "ds"
    few = FolderFileStore(datastore / "few", tmp_path / "index.db", within=datastore)
    few.prepare(16)
    few.put_file(tmp_path / "src" / "d0/f000.bin", "d0/f000.bin")
    assert (datastore / "few" / "d0").is_dir()  # made in place, a temp file in it
    few.close()
    (datastore / "there").mkdir()
    there = FolderFileStore(datastore / "there", tmp_path / "index.db", within=datastore)
    put_all(there, tmp_path / "src", files)
    assert not [p for p in (datastore / "there").iterdir() if p.name.startswith(TEMP_PREFIX)]
    there.close()
    assert tree(datastore / "there") == files


def test_a_folder_made_there_meanwhile_gets_the_files_one_by_one(tmp_path: Path) -> None:
    files = small_files(30)
    write(tmp_path / "src", files)
    datastore, index = tmp_path / "ds", tmp_path / "index.db"
    store = FolderFileStore(datastore / "t", index, within=datastore)
    put_all(store, tmp_path / "src", files)
    write(datastore / "t", {"theirs.txt": "made by a run", "d1/theirs.txt": "too"})
    store.flush()
    store.close()
    assert tree(datastore) == {"t/theirs.txt": b"made by a run", "t/d1/theirs.txt": b"too",
                               **{f"t/{p}": data for p, data in files.items()}}
    with opened_files() as opened, FolderFileStore(datastore / "t", index,
                                                   within=datastore) as again:
        listing = again.list_files()
    assert {p: listing[p] for p in files} == {
        p: RemoteFile(len(data), sha(data)) for p, data in files.items()}
    # only the two files of the run, which the index never vouched for, are read
    assert sorted(p for p in opened if p.startswith(f"{datastore}/")) == sorted(
        str(datastore / "t" / p) for p in ("d1/theirs.txt", "theirs.txt"))


def test_a_link_planted_where_the_target_goes_is_refused(tmp_path: Path) -> None:
    files = small_files(20)
    write(tmp_path / "src", files)
    datastore, elsewhere = tmp_path / "ds", tmp_path / "elsewhere"
    elsewhere.mkdir()
    store = FolderFileStore(datastore / "t", tmp_path / "index.db", within=datastore)
    put_all(store, tmp_path / "src", files)
    (datastore / "t").symlink_to(elsewhere)
    with pytest.raises(UploadError, match="t: is a symbolic link"):
        store.flush()
    store.close()
    assert list(elsewhere.iterdir()) == []
    assert (datastore / "t").is_symlink()
    # The rows written for the unpublished files vouch for nothing: with the link gone,
    # nothing is listed, and a new upload publishes every file.
    (datastore / "t").unlink()
    with FolderFileStore(datastore / "t", tmp_path / "index.db", within=datastore) as again:
        assert again.list_files() == {}
        put_all(again, tmp_path / "src", files)
        assert again.list_files() == {p: RemoteFile(len(d), sha(d)) for p, d in files.items()}
    assert visible(datastore) == {f"t/{p}": data for p, data in files.items()}


def test_a_stage_left_by_a_dead_writer_is_removed_unlisted(tmp_path: Path) -> None:
    datastore = tmp_path / "ds"
    dead = datastore / f"{TEMP_PREFIX}{dead_pid()}-0123abcd-0"
    live = datastore / f"{TEMP_PREFIX}{os.getpid()}-0123abcd-1"
    for stage in (dead, live):
        write(stage, {"d/x.bin": "x", "y.bin": "y"})
    (dead / "d" / "link").symlink_to(tmp_path / "outside")
    (tmp_path / "outside").write_text("not ours")
    with FolderFileStore(datastore, tmp_path / "index.db") as whole:
        assert whole.list_files() == {}  # neither stage is listed
    assert not dead.exists()
    assert tree(live) == {"d/x.bin": b"x", "y.bin": b"y"}  # its writer may still publish it
    assert (tmp_path / "outside").read_text() == "not ours"  # the link removed, not followed
    # A stage of a dead writer beside a new one is removed when the new one is made.
    write(dead, {"z.bin": "z"})
    files = small_files(20)
    write(tmp_path / "src", files)
    with FolderFileStore(datastore / "t", tmp_path / "index.db", within=datastore) as store:
        put_all(store, tmp_path / "src", files)
        assert not dead.exists()


def test_commits_while_many_threads_write_publish_every_file_once(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(folder_store_module, "COMMIT_FILES", 7)  # a commit every 7 files
    files = small_files(150, folders=5)
    files.update({f"d{n}/big.bin": os.urandom(MiB + n) for n in range(3)})
    write(tmp_path / "src", files)
    datastore, index, cache_db = tmp_path / "ds", tmp_path / "index.db", tmp_path / "c.db"
    with FolderFileStore(datastore / "t", index, within=datastore) as store, \
            HashCache(cache_db) as cache:
        plan = plan_sync(tmp_path / "src", store.list_files(), cache=cache)
        result = apply_sync(plan, tmp_path / "src", store, cache=cache, workers=4)
    assert len(result.sent) == len(files)
    assert tree(datastore) == {f"t/{p}": data for p, data in files.items()}
    with opened_files() as opened, FolderFileStore(datastore / "t", index,
                                                   within=datastore) as again:
        assert again.list_files() == {p: RemoteFile(len(d), sha(d)) for p, d in files.items()}
    assert not [p for p in opened if p.startswith(f"{datastore}/")]


_SYNC = """
import sys
from pathlib import Path
from amlctl.uploads import FolderFileStore, HashCache, apply_sync, plan_sync
src, datastore, index, cache_db = map(Path, sys.argv[1:5])
store = FolderFileStore(datastore / "target", index, within=datastore)
with HashCache(cache_db) as cache:
    plan = plan_sync(src, store.list_files(), cache=cache)
    apply_sync(plan, src, store, cache=cache, workers=2)
"""


def test_killed_during_a_first_upload_leaves_nothing_visible_then_converges(
        tmp_path: Path) -> None:
    files = {f"part{i % 4}/{i:04d}.bin": os.urandom(16 * 1024) for i in range(2000)}
    write(tmp_path / "src", files)
    datastore = tmp_path / "ds"
    args = [str(tmp_path / "src"), str(datastore), str(tmp_path / "index.db"),
            str(tmp_path / "cache.db")]
    child = subprocess.Popen([sys.executable, "-c", _SYNC, *args])
    with killed_after(child):
        wait_for(lambda: datastore.exists() and any(
            p.is_file() for p in datastore.rglob("*.bin")))
    assert child.returncode == -signal.SIGKILL
    # Whatever moment it died at, a file under its final name is complete.
    for relpath, data in visible(datastore).items():
        assert data == files[relpath.removeprefix("target/")], relpath
    subprocess.run([sys.executable, "-c", _SYNC, *args], check=True)
    # converged, and the dead writer's stage is gone
    assert tree(datastore) == {f"target/{p}": data for p, data in files.items()}


def test_a_large_upload_leaves_its_rows_in_the_database_files_not_the_wal(
        tmp_path: Path) -> None:
    """The rows of a large upload are checkpointed while the flush waits on the disk, not
    left in the WAL for the close (or the next open) to copy."""
    import sqlite3

    files = {f"d{n % 10}/{n:04d}": str(n) for n in range(1000)}
    write(tmp_path / "src", files)
    datastore, index, cache_db = tmp_path / "ds", tmp_path / "index.db", tmp_path / "c.db"
    store = FolderFileStore(datastore / "t", index, within=datastore)
    cache = HashCache(cache_db)
    plan = plan_sync(tmp_path / "src", store.list_files(), cache=cache)
    apply_sync(plan, tmp_path / "src", store, cache=cache)
    # Both still open: what their database files hold, the WAL ignored.
    for db, table in ((index, "upload_folder_index"), (cache_db, "hashes")):
        reader = sqlite3.connect(f"file:{db}?immutable=1", uri=True)
        assert reader.execute(f"SELECT COUNT(*) FROM {table}").fetchone() == (1000,), db
        reader.close()
    cache.close()
    store.close()


def test_a_commit_of_a_few_staged_files_syncs_each_file_and_folder_of_the_stage(
        tmp_path: Path) -> None:
    """Up to FSYNC_MAX files and folders: an fsync of each, where they are before the
    stage's rename (a path that does not exist would silently sync nothing)."""
    files = small_files(3, folders=2)
    write(tmp_path / "src", files)
    datastore = tmp_path / "ds"
    with FolderFileStore(datastore / "t", tmp_path / "index.db", within=datastore) as store:
        store.prepare(20)  # many announced: staged; only 3 written when the commit comes
        for relpath in files:
            store.put_file(tmp_path / "src" / relpath, relpath)
        (stage,) = [p for p in datastore.iterdir() if p.name.startswith(TEMP_PREFIX)]
        with opened_files() as opened:
            assert store.list_files() == {
                p: RemoteFile(len(d), sha(d)) for p, d in files.items()}
    synced = {p for p in opened if p.startswith(f"{stage}/") or p == str(stage)}
    assert synced == {str(stage), str(stage / "d0"), str(stage / "d1"),
                      *(str(stage / p) for p in files)}
    assert tree(datastore) == {f"t/{p}": d for p, d in files.items()}



def test_many_files_start_going_to_disk_once_half_are_written(tmp_path: Path) -> None:
    """A syncfs starts on a thread when half the files announced are written: the commit's
    own flush then waits for the other half only. Seen from the threads started (a profile
    function, which new threads run with: it sees what they call)."""
    count = folder_store_module.COPIER_MIN_FILES
    files = small_files(count, folders=5)
    write(tmp_path / "src", files)
    datastore = tmp_path / "ds"
    store = FolderFileStore(datastore / "t", tmp_path / "index.db", within=datastore)
    names = list(files)
    synced: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call" and frame.f_code.co_name == "sync_filesystem":
            synced.append(threading.current_thread().name)

    threading.setprofile(profile)
    try:
        store.prepare(count)
        for relpath in names[:count // 2 - 1]:
            store.put_file(tmp_path / "src" / relpath, relpath)
        assert synced == []  # nothing before half
        store.put_file(tmp_path / "src" / names[count // 2 - 1], names[count // 2 - 1])
        wait_for(lambda: len(synced) == 1)  # the early syncfs, on its thread
        for relpath in names[count // 2:]:
            store.put_file(tmp_path / "src" / relpath, relpath)
        assert visible(datastore) == {}  # written, not published
    finally:
        threading.setprofile(None)  # type: ignore[arg-type]
        store.close()
    assert tree(datastore / "t") == files


def test_a_flush_calls_during_once_on_its_thread_and_publishes_even_if_it_fails(
        tmp_path: Path) -> None:
    files = small_files(40)
    write(tmp_path / "src", files)
    datastore = tmp_path / "ds"
    for fails in (False, True):
        root = datastore / f"t{fails}"
        store = FolderFileStore(root, tmp_path / "index.db", within=datastore)
        put_all(store, tmp_path / "src", files)
        calls: list[str] = []

        def during(fails: bool = fails, calls: list[str] = calls) -> None:
            calls.append(threading.current_thread().name)
            if fails:
                raise OSError("the cache's disk is full")

        if fails:
            with pytest.raises(OSError, match="the cache's disk is full"):
                store.flush(during=during)
        else:
            store.flush(during=during)
        store.close()
        assert calls == [threading.current_thread().name]
        assert tree(root) == files  # published all the same
