"""The memo of a plan that found nothing to do: the next plan, with every local stat and the
destination folder's fingerprint unchanged, gives the same plan without the listing; any
change on either side, a racy file, other inputs or a lost cache still get the full plan."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest
from upload_helpers import Env, opened_files, write

from amlctl.uploads import FileChange, FolderFileStore, HashCache
from amlctl.uploads.atomic import TEMP_PREFIX
from amlctl.uploads.folder_store import AHEAD_MIN_FILES

FILES = {f"d{i % 3}/sub/f{i}.txt": f"content {i}" for i in range(12)} | {"top.txt": "top"}


def paths(changes: tuple[FileChange, ...]) -> list[str]:
    return [c.relpath for c in changes]


def memos(env: Env) -> int:
    with sqlite3.connect(env.cache_db) as db:
        return int(db.execute("SELECT count(*) FROM upload_no_op_memo").fetchone()[0])


def synced(env: Env) -> None:
    """src written and uploaded, then a plan that finds nothing to do (and remembers it)."""
    write(env.src, FILES)
    env.sync()
    plan = env.plan()
    assert not plan.has_changes and plan.unchanged == len(FILES) and plan.hashed == 0
    assert memos(env) == 1


def under(opened: list[str], root: Path) -> list[str]:
    return sorted(p for p in opened if p.startswith(str(root) + os.sep))


def test_the_remembered_plan_is_the_full_plan_and_needs_no_listing(env: Env) -> None:
    synced(env)
    full = env.plan(listing=True)  # the store's listing given: no memo used
    # The index is only a memo of the destination: without its rows a listing must read
    # every destination file. The remembered plan lists nothing, so it reads none.
    with sqlite3.connect(env.index) as db:
        db.execute("DELETE FROM upload_folder_index")
    with opened_files() as opened:
        again = env.plan()
    assert again == full
    assert under(opened, env.dst) == [] and under(opened, env.src) == []
    with opened_files() as opened:
        listed = env.plan(listing=True)
    assert listed == full
    assert len(under(opened, env.dst)) == len(FILES)  # the listing did read them


def test_a_local_rewrite_with_its_mtime_put_back_is_seen(env: Env) -> None:
    synced(env)
    path = env.src / "d1" / "sub" / "f4.txt"
    before = path.stat()
    path.write_text("CONTENT 4")  # same size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    plan = env.plan()
    assert paths(plan.change) == ["d1/sub/f4.txt"] and plan.unchanged == len(FILES) - 1
    assert memos(env) == 0  # a plan with changes leaves no memo behind


def test_local_files_added_and_removed_are_seen(env: Env) -> None:
    synced(env)
    (env.src / "top.txt").unlink()
    write(env.src, {"d0/new.txt": "new"})
    plan = env.plan()
    assert paths(plan.add) == ["d0/new.txt"] and plan.kept_extra == 1


@pytest.mark.parametrize("how", ["rewritten", "deleted", "added", "touched"])
def test_a_destination_changed_behind_our_back_is_seen(env: Env, how: str) -> None:
    synced(env)
    target = env.dst / "d2" / "sub" / "f5.txt"
    if how == "rewritten":
        target.write_text("CONTENT 5")  # same size, other bytes
    elif how == "deleted":
        target.unlink()
    elif how == "added":
        write(env.dst, {"d2/extra.txt": "not ours"})
    else:  # same bytes, new mtime: the listing re-reads it and finds nothing to do
        os.utime(target, ns=(1, 1))
    plan = env.plan()
    assert plan.remote_digest == env.plan(listing=True).remote_digest
    if how == "rewritten":
        assert paths(plan.change) == ["d2/sub/f5.txt"]
    elif how == "deleted":
        assert paths(plan.add) == ["d2/sub/f5.txt"]
    elif how == "added":
        assert not plan.has_changes and plan.kept_extra == 1
        assert paths(env.plan(delete_extra=True).delete) == ["d2/extra.txt"]
    else:
        assert not plan.has_changes and plan.unchanged == len(FILES)


def test_files_within_the_racy_window_are_read_by_every_plan(tmp_path: Path) -> None:
    env = Env(tmp_path, racy_window_ns=3600 * 10**9)  # every file just written is racy
    write(env.src, FILES)
    env.sync()
    for _ in range(2):
        plan = env.plan()
        assert not plan.has_changes and plan.hashed == len(FILES)
    assert memos(env) == 0


def test_a_memo_made_with_a_narrower_racy_window_is_not_used(env: Env) -> None:
    synced(env)  # racy window 0: every file trusted
    wide = HashCache(env.cache_db, racy_window_ns=3600 * 10**9)
    with env.store() as store, wide:
        from amlctl.uploads import plan_sync

        plan = plan_sync(env.src, store, cache=wide)
    assert not plan.has_changes and plan.hashed == len(FILES)


def test_other_inputs_do_not_reuse_the_memo(env: Env) -> None:
    write(env.dst, {"extra.txt": "only there"})
    synced(env)
    assert env.plan().kept_extra == 1
    assert paths(env.plan(delete_extra=True).delete) == ["extra.txt"]
    assert env.plan(exclude=("top.txt",)).kept_extra == 2
    resent = env.plan(resend_all=True)
    assert len(resent.change) == len(FILES) and resent.unchanged == 0


def test_a_temp_file_in_the_destination_means_a_full_listing(env: Env) -> None:
    synced(env)
    # a writer that is alive (this process) is mid-copy: no fingerprint, the full listing
    (env.dst / "d0" / f"{TEMP_PREFIX}{os.getpid()}-0-0").write_text("partial")
    with env.store() as store:
        assert store.fingerprint() is None
        assert store.list_files_fingerprinted()[1] is None
    assert not env.plan().has_changes


def test_fingerprint_and_listing_agree_whatever_the_folder_holds(env: Env) -> None:
    synced(env)
    os.symlink(env.dst / "top.txt", env.dst / "d0" / "link.txt")
    os.symlink(env.dst / "d1", env.dst / "d0" / "linked-folder")
    os.mkfifo(env.dst / "d1" / "fifo")
    (env.dst / "empty" / "deeper").mkdir(parents=True)
    with env.store() as store:
        listing, listed_print = store.list_files_fingerprinted()
        assert listed_print is not None and listed_print == store.fingerprint()
        assert set(listing) == set(FILES)
        os.utime(env.dst / "top.txt", ns=(5, 5))
        assert store.fingerprint() != listed_print
        # a file the index could not vouch for (just touched) is read: no fingerprint then
        assert store.list_files_fingerprinted()[1] is None
        assert store.list_files_fingerprinted()[1] == store.fingerprint()


def test_the_fingerprint_names_the_store(tmp_path: Path) -> None:
    index = tmp_path / "index.db"
    for name in ("a", "b"):
        write(tmp_path / "ds" / name, {"same.txt": "same"})
    with FolderFileStore(tmp_path / "ds" / "a", index) as a, \
            FolderFileStore(tmp_path / "ds" / "b", index) as b:
        a.list_files()
        b.list_files()
        assert a.fingerprint() is not None and a.fingerprint() != b.fingerprint()
        assert a.fingerprint_key != b.fingerprint_key


def test_a_damaged_cache_is_rebuilt_and_remembers_again(env: Env) -> None:
    synced(env)
    for suffix in ("-wal", "-shm"):
        env.cache_db.with_name(env.cache_db.name + suffix).unlink(missing_ok=True)
    env.cache_db.write_bytes(b"not a database" * 100)
    plan = env.plan()
    assert not plan.has_changes and plan.hashed == len(FILES)  # read again, once
    assert env.cache_db.with_name("hashcache.db.damaged").is_file()
    assert memos(env) == 0  # files were read for it: the next plan trusts the cache
    assert env.plan().hashed == 0
    assert memos(env) == 1


def test_a_cache_from_before_the_memo_gains_it(env: Env) -> None:
    write(env.src, FILES)
    env.sync()
    with sqlite3.connect(env.cache_db) as db:
        db.execute("DROP TABLE upload_no_op_memo")
    assert not env.plan().has_changes
    assert memos(env) == 1


_FORKED_PLANS = """
import json, os, sys, time
from pathlib import Path

sys.path.insert(0, sys.argv[1])
from upload_helpers import Env, write

forks = []
sys.addaudithook(lambda event, args: forks.append(event) if event == "os.fork" else None)
env = Env(Path(sys.argv[2]))
files = json.loads(sys.argv[3])
write(env.src, files)
out = {}
for step in ("same", "src file changed", "datastore file changed"):
    env.sync()
    env.plan()  # finds nothing to do, and remembers it
    if step == "datastore file changed":
        time.sleep(0.01)
        (env.dst / "top.txt").write_text("changed behind amlctl's back")
    if step == "src file changed":
        (env.src / "top.txt").write_text("changed here")
    forks.clear()
    plan = env.plan()
    with open("/proc/self/task/%d/children" % os.getpid()) as children:
        left = children.read().split()
    out[step] = {"forks": len(forks), "change": [c.relpath for c in plan.change],
                 "listed": plan.unchanged + len(plan.change), "children": left}
print(json.dumps(out))
"""


@pytest.mark.parametrize("count, forks", [(AHEAD_MIN_FILES, 1), (AHEAD_MIN_FILES // 100, 0)])
def test_a_single_threaded_plan_walks_a_large_datastore_folder_in_a_forked_child(
        tmp_path: Path, count: int, forks: int) -> None:
    """In a process of one thread (a CLI run) a datastore folder of thousands of files is
    walked by a forked child while src_dir is scanned (for fewer, the fork would cost more
    than the walk: none is made); what it sees decides as an in-process walk would, and no
    child outlives the plan, used or dropped."""
    files = {f"d{i % 7}/f{i}.txt": f"c{i}" for i in range(count - 1)} | {"top.txt": "top"}
    out = _forked_plans(tmp_path, files)
    assert out["same"] == {"forks": forks, "change": [], "listed": count, "children": []}
    assert out["datastore file changed"] == {
        "forks": forks, "change": ["top.txt"], "listed": count, "children": []}
    # src changed: the walk ahead is dropped (its child reaped), the plan lists the folder
    assert out["src file changed"] == {
        "forks": forks, "change": ["top.txt"], "listed": count, "children": []}


def _forked_plans(tmp_path: Path, files: dict[str, str]) -> dict[str, dict[str, object]]:
    """The plans of _FORKED_PLANS, run in a process of one thread."""
    import json
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _FORKED_PLANS, str(Path(__file__).parent), str(tmp_path),
         json.dumps(files)], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(done.stdout)
