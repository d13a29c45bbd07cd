"""FolderFileStore: atomic writes (also under SIGKILL), stale temps, and an index that may
disagree with the folder."""

from __future__ import annotations

import gc
import hashlib
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from upload_helpers import Env, killed_after, opened_files, tree, wait_for, write

from amlctl.uploads import FolderFileStore, RemoteFile, UploadError
from amlctl.uploads.atomic import TEMP_PREFIX, write_atomic

MiB = 1 << 20

# A child that writes one file through put_file, reading it from a fifo the test feeds.
_PUT_FROM_FIFO = """
import sys
from pathlib import Path
from amlctl.uploads import FolderFileStore
root, index, fifo = map(Path, sys.argv[1:4])
FolderFileStore(root, index).put_file(fifo, "big.bin")
"""

# A child that syncs a whole folder, to be killed somewhere in the middle.
_SYNC = """
import sys
from pathlib import Path
from amlctl.uploads import FolderFileStore, HashCache, apply_sync, plan_sync
src, root, index, cache_db = map(Path, sys.argv[1:5])
store = FolderFileStore(root, index)
with HashCache(cache_db) as cache:
    plan = plan_sync(src, store.list_files(), cache=cache)
    apply_sync(plan, src, store, cache=cache, workers=2)
"""


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob(TEMP_PREFIX + "*")]


def test_put_list_delete(tmp_path: Path) -> None:
    src = tmp_path / "f.bin"
    src.write_bytes(b"payload")
    store = FolderFileStore(tmp_path / "ds" / "t", tmp_path / "index.db")
    assert store.list_files() == {}
    assert store.put_file(src, "a/b/f.bin") == RemoteFile(7, sha(b"payload"))
    assert store.list_files() == {"a/b/f.bin": RemoteFile(7, sha(b"payload"))}
    store.delete_file("a/b/f.bin")
    store.delete_file("a/b/f.bin")  # absent: not an error
    assert store.list_files() == {}
    assert list((tmp_path / "ds" / "t").iterdir()) == []  # emptied folders removed
    store.close()


@pytest.mark.parametrize("bad", ["", "/abs", "a/../b", "./a", "a//b", "a/", ".."])
def test_relpaths_must_stay_inside(tmp_path: Path, bad: str) -> None:
    store = FolderFileStore(tmp_path / "ds", tmp_path / "index.db")
    with pytest.raises(UploadError, match="not a relative path inside"):
        store.delete_file(bad)


def test_large_file_is_streamed_and_hashed_while_copied(tmp_path: Path) -> None:
    data = os.urandom(5 * MiB + 123)
    src = tmp_path / "big.bin"
    src.write_bytes(data)
    store = FolderFileStore(tmp_path / "ds", tmp_path / "index.db")
    with opened_files() as opened:
        remote = store.put_file(src, "big.bin")
    assert remote == RemoteFile(len(data), sha(data))
    assert opened.count(str(src)) == 1  # read once: hashing rides on the copy
    store.flush()
    assert (tmp_path / "ds" / "big.bin").read_bytes() == data
    assert temps(tmp_path / "ds") == []


def test_written_files_appear_together_at_the_commit(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    write(tmp_path / "src", {"a": "A", "sub/b": "B"})
    store = FolderFileStore(root, tmp_path / "index.db")
    store.put_file(tmp_path / "src" / "a", "a")
    store.put_file(tmp_path / "src" / "sub" / "b", "sub/b")
    # Written, not yet published: only temp files, which no listing shows.
    assert {p.name for p in root.rglob("*") if p.is_file()} <= {p.name for p in temps(root)}
    assert store.list_files() == {"a": RemoteFile(1, sha(b"A")), "sub/b": RemoteFile(1, sha(b"B"))}
    assert tree(root) == {"a": b"A", "sub/b": b"B"}
    store.close()


def test_delete_after_an_unpublished_put_wins(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"x")
    with FolderFileStore(tmp_path / "ds", tmp_path / "index.db") as store:
        store.put_file(tmp_path / "f", "f")
        store.delete_file("f")
        assert store.list_files() == {}
    assert tree(tmp_path / "ds") == {}


def test_killed_mid_copy_leaves_the_old_file_whole_and_a_temp_cleaned_later(
    tmp_path: Path,
) -> None:
    root, index = tmp_path / "ds", tmp_path / "index.db"
    old = b"old version\n" * 1000
    (tmp_path / "old.bin").write_bytes(old)
    with FolderFileStore(root, index) as store:
        store.put_file(tmp_path / "old.bin", "big.bin")
    fifo = tmp_path / "feed"
    os.mkfifo(fifo)
    child = subprocess.Popen([sys.executable, "-c", _PUT_FROM_FIFO, str(root), str(index),
                              str(fifo)])
    # killed before the feed closes: the copy never sees its end
    with open(fifo, "wb", buffering=0) as feed, killed_after(child):
        feed.write(os.urandom(4 * MiB))  # the copy is now half done, waiting for more
        wait_for(lambda: any(p.stat().st_size >= 4 * MiB for p in temps(root)))
        # A reader meanwhile still sees the complete old file under the final name.
        assert (root / "big.bin").read_bytes() == old
    assert child.returncode == -signal.SIGKILL
    assert (root / "big.bin").read_bytes() == old
    assert len(temps(root)) == 1  # the dead writer's temp file

    listing = FolderFileStore(root, index).list_files()
    assert listing == {"big.bin": RemoteFile(len(old), sha(old))}
    assert temps(root) == []  # cleaned, since its writer is dead


def test_temp_of_a_live_writer_is_not_listed_nor_removed(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    root.mkdir()
    mine = root / f"{TEMP_PREFIX}{os.getpid()}-0123456789ab"
    mine.write_bytes(b"in progress")
    assert FolderFileStore(root, tmp_path / "index.db").list_files() == {}
    assert mine.exists()


def test_sync_killed_at_any_point_converges(tmp_path: Path) -> None:
    env = Env(tmp_path)
    files = {f"part/{i:03d}.bin": os.urandom(256 * 1024) for i in range(40)}
    files["huge.bin"] = os.urandom(24 * MiB)
    write(env.src, files)
    child = subprocess.Popen([sys.executable, "-c", _SYNC, str(env.src), str(env.dst),
                              str(env.index), str(env.cache_db)])
    with killed_after(child):
        wait_for(lambda: env.dst.exists() and any(
            p.is_file() and not p.name.startswith(TEMP_PREFIX) for p in env.dst.rglob("*")))
    # Whatever moment it died at, every file under its final name is complete.
    for relpath, data in tree(env.dst).items():
        if not Path(relpath).name.startswith(TEMP_PREFIX):
            assert data == files[relpath], relpath
    plan = env.plan()
    assert len(plan.add) + plan.unchanged == len(files)
    env.sync()
    assert tree(env.dst) == files  # converged, no temp left
    assert not env.plan().has_changes


def test_index_missing_a_row_is_healed_by_hashing(tmp_path: Path) -> None:
    # As if killed between the rename and the index write: the file is there, its row not.
    root, index = tmp_path / "ds", tmp_path / "index.db"
    (tmp_path / "f").write_bytes(b"complete")
    write_atomic(tmp_path / "f", root / "f")
    store = FolderFileStore(root, index)
    with opened_files() as opened:
        assert store.list_files() == {"f": RemoteFile(8, sha(b"complete"))}
    assert opened.count(str(root / "f")) == 1
    with opened_files() as opened:
        store.list_files()
    assert str(root / "f") not in opened  # the row is back


def test_file_changed_behind_the_index_is_rehashed(tmp_path: Path) -> None:
    root, index = tmp_path / "ds", tmp_path / "index.db"
    (tmp_path / "f").write_bytes(b"AAAA")
    store = FolderFileStore(root, index)
    store.put_file(tmp_path / "f", "f")
    store.flush()
    before = (root / "f").stat()
    # Replaced behind our back with same size, mtime put back: only the inode tells.
    (tmp_path / "g").write_bytes(b"BBBB")
    os.utime(tmp_path / "g", ns=(before.st_atime_ns, before.st_mtime_ns))
    (tmp_path / "g").replace(root / "f")
    assert store.list_files() == {"f": RemoteFile(4, sha(b"BBBB"))}


def test_row_of_a_vanished_file_is_dropped(tmp_path: Path) -> None:
    root, index = tmp_path / "ds", tmp_path / "index.db"
    (tmp_path / "f").write_bytes(b"x")
    with FolderFileStore(root, index) as store:
        store.put_file(tmp_path / "f", "f")
    (root / "f").unlink()
    with FolderFileStore(root, index) as store:
        assert store.list_files() == {}
    count = sqlite3.connect(index).execute("SELECT COUNT(*) FROM upload_folder_index")
    assert count.fetchone() == (0,)


def test_rows_reach_the_index_without_an_explicit_close(tmp_path: Path) -> None:
    root, index = tmp_path / "ds", tmp_path / "index.db"
    (tmp_path / "f").write_bytes(b"x")
    store = FolderFileStore(root, index)
    store.put_file(tmp_path / "f", "f")
    del store  # garbage-collected: the finaliser writes the pending row
    count = sqlite3.connect(index).execute("SELECT COUNT(*) FROM upload_folder_index")
    assert count.fetchone() == (1,)


def test_stores_sharing_one_index_stay_apart(tmp_path: Path) -> None:
    index = tmp_path / "index.db"
    (tmp_path / "f").write_bytes(b"x")
    with FolderFileStore(tmp_path / "ds" / "one", index) as one:
        one.put_file(tmp_path / "f", "f")
    with FolderFileStore(tmp_path / "ds" / "two", index) as two:
        assert two.list_files() == {}
    with FolderFileStore(tmp_path / "ds" / "one", index) as one:
        assert list(one.list_files()) == ["f"]


def test_file_where_a_folder_is_needs_delete_extra(env: Env) -> None:
    write(env.src, {"a/x.txt": "x"})
    env.sync()
    (env.src / "a" / "x.txt").unlink()
    (env.src / "a").rmdir()
    write(env.src, {"a": "now a file"})
    with pytest.raises(UploadError, match=r"a: is a folder in the datastore folder"):
        env.sync(delete_extra=False)
    env.sync(delete_extra=True)  # deletes first, so the name is free
    assert tree(env.dst) == {"a": b"now a file"}


def test_folder_where_a_file_is_needs_delete_extra(env: Env) -> None:
    write(env.src, {"a": "file"})
    env.sync()
    (env.src / "a").unlink()
    write(env.src, {"a/x.txt": "x"})
    with pytest.raises(UploadError, match=r"a/x.txt: a parent of it is a file"):
        env.sync(delete_extra=False)
    env.sync(delete_extra=True)
    assert tree(env.dst) == {"a/x.txt": b"x"}


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_folder_descriptors_kept_for_writes_are_bounded_and_released(tmp_path: Path) -> None:
    from amlctl.uploads.folder_store import _Folders

    src = tmp_path / "one.txt"
    src.write_text("one")
    gc.collect()  # stores of earlier tests close their descriptors now, not during this one
    before = _open_fds()
    store = FolderFileStore(tmp_path / "dst", tmp_path / "index.db")
    folders = _Folders.MAX * 2
    for n in range(folders):
        store.put_file(src, f"d{n:03d}/x.txt")
        # the store holds at most MAX folder descriptors (plus its index's) at any time
        assert len(_open_fds() - before) <= _Folders.MAX + 4
    store.close()
    assert not _open_fds() - before  # every descriptor it opened is closed
    assert sorted(p.parent.name for p in (tmp_path / "dst").glob("*/x.txt")) == [
        f"d{n:03d}" for n in range(folders)]


def test_a_write_after_its_folder_was_swapped_for_a_link_never_lands_behind_it(
        tmp_path: Path) -> None:
    """A folder's descriptor is kept between writes: a second write into a folder swapped
    for a link meanwhile goes to the folder that was opened (wherever it was moved), never
    through the link, and the commit refuses to publish it."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    src = tmp_path / "payload"
    src.write_bytes(b"payload")
    store = FolderFileStore(tmp_path / "ds" / "t", tmp_path / "index.db",
                            within=tmp_path / "ds")
    store.put_file(src, "sub/a.txt")
    os.rename(tmp_path / "ds" / "t" / "sub", tmp_path / "moved")
    (tmp_path / "ds" / "t" / "sub").symlink_to(elsewhere)
    store.put_file(src, "sub/b.txt")
    with pytest.raises(UploadError, match="sub: is a symbolic link"):
        store.flush()
    store.close()
    assert list(elsewhere.iterdir()) == []
    assert not [p for p in (tmp_path / "moved").iterdir() if not p.name.startswith(TEMP_PREFIX)]


def test_a_forked_child_names_its_temp_files_with_its_own_pid() -> None:
    """Temp names carry the writer's pid (a stale temp is one whose writer is dead): a child
    forked after the parent wrote must not reuse the parent's."""
    from amlctl.uploads.atomic import temp_name

    parent = temp_name()
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: report its temp name, then leave at once
        os.write(write, temp_name().encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as pipe:
        named = pipe.read().decode()
    os.waitpid(child, 0)
    assert parent.startswith(f"{TEMP_PREFIX}{os.getpid()}-")
    assert named.startswith(f"{TEMP_PREFIX}{child}-")
    assert temp_name().startswith(f"{TEMP_PREFIX}{os.getpid()}-")
