"""plan_sync: the file-level difference, and which files it has to read to know it."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from upload_helpers import Env, opened_files, tree, write
from waiting import wait_until

from amlctl.uploads import FileChange, RemoteFile, SyncPlan, listing_digest, plan_sync


def paths(changes: tuple[FileChange, ...]) -> list[str]:
    return [c.relpath for c in changes]


def test_first_plan_adds_everything_without_reading_a_file(env: Env) -> None:
    write(env.src, {"a.txt": "alpha", "sub/b.bin": b"\x00" * 1000})
    with opened_files() as opened:
        plan = env.plan()
    assert paths(plan.add) == ["a.txt", "sub/b.bin"]
    assert plan.add[1] == FileChange("sub/b.bin", 1000, None)
    assert plan.bytes_to_send == 1005
    assert (plan.change, plan.delete, plan.unchanged, plan.hashed) == ((), (), 0, 0)
    assert not [p for p in opened if p.startswith(str(env.src))]


def test_add_change_delete(env: Env) -> None:
    write(env.src, {"keep.txt": "same", "edit.txt": "old", "gone.txt": "bye", "d/x": "x"})
    env.sync()
    write(env.src, {"new.txt": "hello", "edit.txt": "new content"})
    (env.src / "gone.txt").unlink()
    plan = env.plan(delete_extra=True)
    assert paths(plan.add) == ["new.txt"]
    assert plan.change == (
        FileChange("edit.txt", 11, None, 3, plan.change[0].remote_sha256),
    )
    assert paths(plan.delete) == ["gone.txt"]
    assert plan.delete[0].size == 3
    assert (plan.unchanged, plan.kept_extra, plan.bytes_to_send) == (2, 0, 16)
    assert plan.has_changes

    with env.store() as store, env.cache() as cache:
        from amlctl.uploads import apply_sync

        result = apply_sync(plan, env.src, store, cache=cache)
    assert [f.relpath for f in result.sent] == ["edit.txt", "new.txt"]
    assert result.deleted == ("gone.txt",)
    assert tree(env.dst) == tree(env.src)
    assert not env.plan(delete_extra=True).has_changes


def test_delete_extra_off_keeps_remote_extras(env: Env) -> None:
    write(env.src, {"a": "1", "b": "2"})
    env.sync()
    (env.src / "b").unlink()
    plan = env.plan(delete_extra=False)
    assert plan.delete == ()
    assert plan.kept_extra == 1
    assert not plan.has_changes
    env.sync(delete_extra=False)
    assert (env.dst / "b").read_text() == "2"


def test_second_plan_reads_no_unchanged_file(env: Env) -> None:
    write(env.src, {f"d{i % 7}/f{i}.txt": f"content {i}" for i in range(200)})
    env.sync()
    with opened_files() as opened:
        plan = env.plan()
    assert (plan.unchanged, plan.hashed, plan.has_changes) == (200, 0, False)
    # (the folders themselves are opened to walk them; no file in them may be)
    touched = [p for p in opened if p.startswith((f"{env.src}/", f"{env.dst}/"))]
    assert touched == []  # neither the sources nor the datastore copies were opened


def test_same_size_rewrite_with_mtime_put_back_is_seen_through_ctime(env: Env) -> None:
    write(env.src, {"data.csv": "1,2,3\n"})
    env.sync()
    path = env.src / "data.csv"
    before = path.stat()

    def rewrite() -> bool:
        with open(path, "r+b") as fh:  # same inode, same size
            fh.write(b"9,9,9\n")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        return path.stat().st_ctime_ns != before.st_ctime_ns

    # the kernel's clock for ctime is coarse: rewrite until it has moved
    wait_until(rewrite, what="the rewrite to get a new ctime", interval=0.005)
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (
        before.st_size, before.st_mtime_ns, before.st_ino)
    plan = env.plan()
    assert paths(plan.change) == ["data.csv"]
    assert plan.hashed == 1  # the stat differed (ctime), so it was read, and differs


def test_same_size_replacement_by_rename_is_seen_through_the_inode(env: Env) -> None:
    write(env.src, {"model.bin": b"A" * 64})
    env.sync()
    path = env.src / "model.bin"
    before = path.stat()
    other = env.src.parent / "elsewhere.bin"
    other.write_bytes(b"B" * 64)
    os.utime(other, ns=(before.st_atime_ns, before.st_mtime_ns))
    other.replace(path)
    assert path.stat().st_ino != before.st_ino
    plan = env.plan()
    assert paths(plan.change) == ["model.bin"]


def test_touched_but_identical_file_is_read_once_and_stays_unchanged(env: Env) -> None:
    write(env.src, {"a.txt": "same bytes"})
    env.sync()
    os.utime(env.src / "a.txt")  # new mtime, same content
    with opened_files() as opened:
        plan = env.plan()
    assert (plan.unchanged, plan.hashed, plan.has_changes) == (1, 1, False)
    assert opened.count(str(env.src / "a.txt")) == 1
    with opened_files() as opened:
        assert env.plan().hashed == 0  # the new stat is in the cache now
    assert str(env.src / "a.txt") not in opened


def test_racy_files_are_read_again_until_older_than_the_window(tmp_path: Path) -> None:
    env = Env(tmp_path, racy_window_ns=300_000_000)
    write(env.src, {"fresh.txt": "just written"})
    env.sync()
    # Hashed within 0.3 s of its last write: a same-tick rewrite could hide, so re-read.
    assert env.plan().hashed == 1
    ctime_ns = (env.src / "fresh.txt").stat().st_ctime_ns
    # the ctime clock is coarse and may lag the wall clock by a tick: allow 50 ms for it
    wait_until(lambda: time.time_ns() > ctime_ns + 350_000_000, what="the racy window to pass")
    assert env.plan().hashed == 1  # re-read once more, now hashed well after its ctime...
    assert env.plan().hashed == 0  # ...after which the cache vouches for it


def test_store_without_hash_means_change_when_sizes_match(env: Env) -> None:
    write(env.src, {"a.txt": "abc", "b.txt": "abcd"})
    listing = {"a.txt": RemoteFile(3, None), "b.txt": RemoteFile(9, None)}
    with opened_files() as opened, env.cache() as cache:
        plan = plan_sync(env.src, listing, cache=cache)
    assert paths(plan.change) == ["a.txt", "b.txt"]
    assert plan.hashed == 0
    assert not [p for p in opened if p.startswith(str(env.src))]


def test_plan_round_trips_through_json(env: Env) -> None:
    write(env.src, {"a": "1", "b": "22", "c": "333"})
    env.sync()
    write(env.src, {"a": "one", "new": "n"})
    (env.src / "c").unlink()
    plan = env.plan(delete_extra=True)
    data = json.loads(json.dumps(plan.to_dict()))
    assert SyncPlan.from_dict(data) == plan
    assert data["bytes_to_send"] == 4
    assert data["delete"] == [{"path": "c", "size": 3, "sha256": plan.delete[0].sha256}]
    # the digest names the store listing the plan was made from: the same listing gives the
    # same digest, a listing changed since gives another (so a stale saved plan is caught)
    assert len(data["remote_digest"]) == 64
    assert env.plan(delete_extra=True).remote_digest == data["remote_digest"]
    with env.store() as store:
        store.delete_file("b")
    assert env.plan(delete_extra=True).remote_digest != data["remote_digest"]


def test_listing_digest_ignores_order_and_sees_content() -> None:
    one = {"a": RemoteFile(1, "x"), "b": RemoteFile(2, None)}
    two = {"b": RemoteFile(2, None), "a": RemoteFile(1, "x")}
    assert listing_digest(one) == listing_digest(two)
    assert listing_digest(one) != listing_digest({**one, "a": RemoteFile(1, "y")})


def test_cache_forgets_files_that_left_src(env: Env) -> None:
    write(env.src, {"a": "1", "b": "2"})
    env.sync()
    (env.src / "b").unlink()
    env.plan()
    import sqlite3

    rows = sqlite3.connect(env.cache_db).execute("SELECT path FROM hashes").fetchall()
    assert rows == [(str(env.src.absolute() / "a"),)]


def test_cache_forgets_a_renamed_file_though_the_count_is_unchanged(env: Env) -> None:
    write(env.src, {"a": "1", "b": "2"})
    env.sync()
    (env.src / "b").rename(env.src / "c")
    env.sync()
    import sqlite3

    rows = sqlite3.connect(env.cache_db).execute("SELECT path FROM hashes ORDER BY path")
    assert [os.path.basename(p) for (p,) in rows] == ["a", "c"]


def test_uploads_nested_in_one_cache_forget_what_left_either(env: Env) -> None:
    """Two uploads, one folder inside the other, planned through one cache (as a plan of a
    stack does): a file that leaves the inner folder is forgotten."""
    from amlctl.uploads import FolderFileStore, HashCache, apply_sync

    write(env.src, {"top": "1", "sub/x": "2", "sub/y": "3"})
    sub = env.src / "sub"

    def sync_both() -> None:
        with HashCache(env.cache_db, racy_window_ns=0) as cache:
            for root, name in ((env.src, "outer"), (sub, "inner")):
                with FolderFileStore(env.dst / name, env.index) as store:
                    plan = plan_sync(root, store.list_files(), cache=cache)
                    apply_sync(plan, root, store, cache=cache)

    sync_both()
    (sub / "x").unlink()
    sync_both()
    import sqlite3

    rows = sqlite3.connect(env.cache_db).execute("SELECT path FROM hashes ORDER BY path")
    assert [os.path.relpath(p, env.src) for (p,) in rows] == ["sub/y", "top"]
