"""`FileStore` over a plain folder, for the local backend.

`FolderFileStore(root, index_db, within=datastore_folder)`: root is
`<datastore folder>/<target_path>`; index_db a SQLite file (it may be shared with other
stores and other tables: this one is `upload_folder_index`, keyed by root) holding
(relpath, size, mtime_ns, ctime_ns, inode, sha256) so listing does not re-hash.

Writes are batched to make them durable cheaply: `put_file` streams src into a temp file
beside its destination and returns; the files written become visible together at the next
commit, which first puts their data on disk (see `atomic.make_durable`), then renames each
temp over its destination. A commit happens every `COMMIT_FILES` files or `COMMIT_BYTES`
bytes, and at `flush`, `list_files` and `close` (also when the store is garbage-collected or
the interpreter exits). `flush` also makes the renames durable. `apply_sync` calls `flush`
before it returns or raises. A process killed before a commit leaves temp files only, never
a partial file under a final name; the next sync cleans the temps and sends those files
again.

A first upload of many files (`prepare(files)`, more than FSYNC_MAX) into a target folder that
does not exist yet skips the rename per file: the first missing folder is made under a temp
name (the stage), small files go into it under their final names, and the commit renames the
stage into place once their data is on disk; larger files go through temp files as above.
Nothing in a temp-named folder is listed, and a stage whose process is dead is deleted like
a temp file. Should a folder of that name appear meanwhile, the staged files are moved into
it one by one. Thousands of files (`prepare`, COPIER_MIN_FILES) are copied by helper
processes (see `copier`), and once half of them are written a syncfs starts on a thread, so
the commit's own waits for the rest only.

A plan of an unchanged upload needs the folder's `fingerprint` (a stat of every file):
`fingerprint_ahead` has a forked copy of the process walk it while the caller scans src_dir
(on Linux, when the process has one thread: a CLI run), and hands it over through a pipe.

The folder is the truth, the index only a memo:
- a file whose size, mtime, ctime or inode differs from its row (or has no row) is hashed
  during the listing and its row rewritten; this covers a process killed between the rename
  and the index write, and any change made behind our back;
- rows of files that are gone are dropped; index commits are not fsynced (WAL,
  synchronous=NORMAL): a lost row only costs a re-hash;
- temp files are never listed, and those of dead processes are deleted;
- symlinks and special files inside the folder are not ours and are not listed.

Nothing outside the datastore folder (`within=`) is ever written, renamed, listed, read or
deleted: every folder below it is opened without following symlinks (see `dirfd`), so a
link planted there (a run mounts the datastore folder itself) is refused with UploadError
naming it, never followed. Writers keep a folder's descriptor for the next file written there
(`_Folders`); a commit opens each folder afresh before renaming into it, so a folder swapped
for a link in between gets nothing published through the link.

A file cannot be written below a file of a parent's name (`put_file` raises UploadError) nor
where the folder holds a folder of its name (the commit raises UploadError, naming it);
delete_extra resolves both, as the sync deletes before it writes. Folders emptied by
`delete_file` are removed, up to (not including) the datastore folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import marshal
import os
import sqlite3
import stat as statmod
import sys
import threading
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, TypeVar, overload

from amlctl import statedb
from amlctl.uploads.atomic import (
    FSYNC_MAX,
    TEMP_PREFIX,
    copy_into,
    hash_fd,
    make_durable,
    open_source,
    remove_stale_temp,
    sync_filesystem,
    temp_name,
)
from amlctl.uploads.copier import MAX_MESSAGE, Copied, Copier, CopierGone, Job, available
from amlctl.uploads.dirfd import DirChain, open_chain, open_file, stat_files, walk_files
from amlctl.uploads.errors import UploadError
from amlctl.uploads.model import FileStat, RemoteFile
from amlctl.uploads.store import check_relpath

# Each commit waits for a syncfs, which on a busy machine costs as much as copying thousands of
# small files: a typical upload (up to this many files, COMMIT_BYTES) commits once, at the end.
COMMIT_FILES = 16384
COMMIT_BYTES = 256 << 20
# Files under this size for a root that does not exist yet go into its stage under their final
# names (see _Stage); larger ones through temp files: a rename is little beside their copy.
STAGE_FILE_MAX = 1 << 20
# From this many files to put, small ones are copied by helper processes (see `copier`):
# starting one costs ~10 ms, what it saves on ~500 small files.
COPIER_MIN_FILES = 1000
# From this many files in root, its fingerprint is made by a forked child beside the
# caller's work (see `fingerprint_ahead`): a fork costs this process ~2 ms, what walking
# ~1,000 files does (a plan of 100 uploads of a few files each spent 0.17 s forking).
AHEAD_MIN_FILES = 1000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS upload_folder_index (
    root TEXT NOT NULL,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (root, relpath)
) WITHOUT ROWID
"""

_Row = tuple[int, int, int, int, str]  # size, mtime_ns, ctime_ns, ino, sha256
_T = TypeVar("_T")
_Stat = tuple[str, int, int, int, int]  # relpath, size, mtime_ns, ctime_ns, ino


def _digest(key: str, stats: list[_Stat]) -> str:
    """The fingerprint of a walk: its files' stats in walk order (a folder whose entries
    come back in another order gives another digest: a needless slow listing, never a
    wrong one). marshal version 2: no back-references, the fastest to write."""
    return hashlib.sha256(key.encode() + b"\0" + marshal.dumps(stats, 2)).hexdigest()


def _row(st: os.stat_result, sha256: str) -> _Row:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, sha256)


class FolderFileStore:
    """The files under `root`, with their hashes memoised in `index_db` (see module doc).

    `within` is the folder the store must never leave (the datastore folder; default:
    root itself): below it every folder is opened without following symlinks, and a link
    on the way raises UploadError (see `dirfd`).
    """

    # Copies into a local folder are CPU-bound (hashing, Python per file): more threads than
    # cores only contend for the interpreter lock.
    parallelism = max(2, os.cpu_count() or 2)
    flush_during = True  # flush takes `during` (see the FileStore contract)

    def __init__(self, root: Path, index_db: Path, *, within: Path | None = None) -> None:
        self.root = root.absolute()
        base = (within or root).absolute()
        try:
            below = self.root.relative_to(base)
        except ValueError:
            raise UploadError(f"{self.root}: not inside {base}") from None
        self._base = str(base)
        self._parts = below.parts  # root's folders below base, walked without following links
        # The index key: base resolved (amlctl's own folder), the rest as given.
        self._index = _Index(index_db, str(Path(os.path.realpath(base), *below.parts)))
        self._folders = _Folders(self._base, self._parts)
        self._writes = _Writes(self._base, self._parts, self._index, self._folders)
        self._copiers = _Copiers(self.parallelism)
        weakref.finalize(self, _close, self._writes, self._index, self._folders,
                         self._copiers)

    def list_files(self) -> dict[str, RemoteFile]:
        """Every complete file under root; hashes from the index, or read when in doubt."""
        return self.list_files_fingerprinted()[0]

    @property
    def fingerprint_key(self) -> str:
        """Names this store among others (its index key) for memos of its fingerprint."""
        return self._index.key

    def fingerprint(self) -> str | None:
        """A digest of the stat of every file under root, without a listing (see the
        FileStore contract): equal to what `list_files_fingerprinted` gave with the same
        files unchanged. None while temp files lie there (a write may be under way)."""
        self._writes.commit(final=False)
        chain = self._root_chain()
        if chain is None:
            return self._fingerprint_of([])
        with chain:
            return self._fingerprint_of(stat_files(chain, TEMP_PREFIX))

    def _fingerprint_of(self, stats: list[_Stat] | None) -> str | None:
        """The fingerprint of a walk's stats (None: the walk met a temp file)."""
        return None if stats is None else _digest(self._index.key, stats)

    def fingerprint_ahead(self, files: int) -> FingerprintAhead:
        """`fingerprint`, started now beside the caller's own work: where this process has
        one thread (and can fork), a forked copy of it walks root while the caller goes on
        (two walks in two threads take turns at every stat: slower than one after the
        other). `files`: how many root held when last fingerprinted; for fewer than
        AHEAD_MIN_FILES nothing starts now (the fork would cost more than the walk it
        spares) and `result()` walks then. Take it with `result()`, or drop it with
        `cancel()`."""
        ahead = FingerprintAhead(self)
        # Linux only: elsewhere a fork may inherit runtimes that do not survive one (macOS)
        if (files >= AHEAD_MIN_FILES and threading.active_count() == 1
                and sys.platform.startswith("linux")):
            self._writes.commit(final=False)
            chain = self._root_chain()
            if chain is not None:  # else fingerprint() says what no folder gives
                with chain:
                    ahead.start(chain)
        return ahead

    def list_files_fingerprinted(self) -> tuple[dict[str, RemoteFile], str | None]:
        """`list_files`, and the `fingerprint` of the files listed: None unless the index
        vouched for every one of them as they were walked (none read, no temp file)."""
        self._writes.commit(final=False)
        rows = self._index.load()
        listing: dict[str, RemoteFile] = {}
        fixes: dict[str, _Row] = {}
        stats: list[_Stat] = []
        append = stats.append
        vouched = True  # every file listed on the strength of its row and one stat
        new = tuple.__new__
        for relpath, dir_fd, entry in self._walk():
            # The common case inline (once per file): a regular file its row vouches
            # for, with one stat; anything else is looked at in _list_one.
            row = rows.get(relpath)
            if row is not None and entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                if (row[0] == st.st_size and row[1] == st.st_mtime_ns
                        and row[2] == st.st_ctime_ns and row[3] == st.st_ino
                        and statmod.S_ISREG(st.st_mode)
                        and not entry.name.startswith(TEMP_PREFIX)):
                    del rows[relpath]
                    listing[relpath] = new(RemoteFile, (row[0], row[4]))
                    append((relpath, row[0], row[1], row[2], row[3]))
                    continue
            if entry.is_file(follow_symlinks=False) or entry.name.startswith(TEMP_PREFIX):
                vouched = False
            self._list_one(relpath, dir_fd, entry, rows, listing, fixes)
        self._index.write(fixes, gone=rows.keys())
        return listing, _digest(self._index.key, stats) if vouched else None

    def _root_chain(self) -> DirChain | None:
        """root's folders, opened without following links; None when root is missing or a
        file (no folder, no files)."""
        try:
            return open_chain(self._base, self._parts, create=False)
        except NotADirectoryError:
            return None

    def _walk(self) -> Iterator[tuple[str, int, os.DirEntry[str]]]:
        """`walk_files` of root; nothing when root is missing or a file."""
        chain = self._root_chain()
        if chain is not None:
            with chain:
                yield from walk_files(chain)

    def _list_one(self, relpath: str, dir_fd: int, entry: os.DirEntry[str],
                  rows: dict[str, _Row], listing: dict[str, RemoteFile],
                  fixes: dict[str, _Row]) -> None:
        if entry.name.startswith(TEMP_PREFIX):
            remove_stale_temp(entry.name, dir_fd)
            return
        if not entry.is_file(follow_symlinks=False):
            return  # symlinks and special files are not ours
        st = entry.stat(follow_symlinks=False)
        if not statmod.S_ISREG(st.st_mode):
            return
        row = rows.pop(relpath, None)
        if row is not None and row[:4] == (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino):
            listing[relpath] = RemoteFile(st.st_size, row[4])
            return
        # The index does not vouch for this file: doubt, so read it (never through a link).
        sys.audit("amlctl.open", os.path.join(self._root_shown, relpath))
        try:
            hashed = hash_fd(open_file(dir_fd, entry.name))
        except FileNotFoundError:
            return  # deleted behind our back while we listed
        except OSError:
            return  # replaced by a link or a special file meanwhile: not ours
        listing[relpath] = RemoteFile(hashed.size, hashed.sha256)
        fixes[relpath] = (hashed.size, hashed.stat.mtime_ns, hashed.stat.ctime_ns,
                          hashed.stat.ino, hashed.sha256)

    @property
    def _root_shown(self) -> str:
        return str(self.root)

    def put_file(self, src: Path, relpath: str) -> RemoteFile:
        """Write src as relpath; visible whole at the next commit (see module doc)."""
        return self.put_file_stat(src, relpath)[0]

    def put_file_stat(self, src: str | Path, relpath: str) -> tuple[RemoteFile, FileStat]:
        """`put_file`, also giving src's stat taken as it was opened, before any byte was
        read (see the FileStore contract)."""
        *folder, name = check_relpath(relpath).split("/")
        parts = (*self._parts, *folder)
        try:
            slot = self._folders.acquire(parts)
        except (FileExistsError, NotADirectoryError) as exc:
            raise UploadError(
                f"{relpath}: a parent of it is a file in the datastore folder "
                f"{self.root}; set delete_extra: true or remove that file"
            ) from exc
        try:
            fin, stat = open_source(src)
            try:
                pending = None
                if stat.size < STAGE_FILE_MAX and self._folders.begin_final(slot):
                    try:
                        # A name taken in the stage (sent twice before a commit, or a
                        # folder's): through a temp file, whose rename decides.
                        with contextlib.suppress(FileExistsError):
                            hashed, written = copy_into(fin, stat, name, slot.fd,
                                                        stat_written=True)
                            assert written is not None
                            pending = _Pending(parts, "", name, relpath, hashed.size,
                                               hashed.sha256, slot.where,
                                               _row(written, hashed.sha256))
                            full = self._writes.add(pending)  # before the stage may go
                    finally:
                        self._folders.end_final()
                if pending is None:
                    tmp = temp_name()
                    hashed, _ = copy_into(fin, stat, tmp, slot.fd)
                    full = self._writes.add(_Pending(parts, tmp, name, relpath, hashed.size,
                                                     hashed.sha256, slot.where))
            finally:
                os.close(fin)
        finally:
            self._folders.release(slot)
        if full:
            self._writes.commit(final=False)
        return RemoteFile(hashed.size, hashed.sha256), hashed.stat

    def prepare(self, files: int) -> None:
        """Told that `files` files are about to be put: for many (more than FSYNC_MAX, so
        one syncfs makes them durable), a missing root is staged (see _Stage); for
        thousands, `put_files_stat` copies them in helper processes (see `copier`)."""
        if files > FSYNC_MAX:
            self._folders.allow_stage()
        if files >= COPIER_MIN_FILES:
            self._copiers.enable()
            self._writes.flush_early_at(files // 2)

    def put_files_stat(self, src_root: str, items: Sequence[tuple[str, int]]
                       ) -> tuple[list[tuple[RemoteFile, FileStat]], Exception | None]:
        """`put_file_stat` of each (relpath, expected size), from src_root/relpath, in
        order, stopping at the first failure: what the files put gave, and that failure
        (None if none). After `prepare` of thousands of files, through a helper process
        (see `copier`)."""
        done: list[tuple[RemoteFile, FileStat]] = []
        clean = 0  # the helper gets the files before the first bad relpath, if any
        with contextlib.suppress(UploadError):  # put_file_stat raises it, below
            for relpath, _ in items:
                check_relpath(relpath)
                clean += 1
        copier = self._copiers.take() if clean else None
        try:
            if copier is not None:
                done = self._copy_batch(copier, src_root, items[:clean])
        finally:
            self._copiers.give_back(copier)
        for relpath, _ in items[len(done):]:  # the rest (all without a helper) here
            try:
                done.append(self.put_file_stat(os.path.join(src_root, relpath), relpath))
            except Exception as exc:  # handed to the caller, as a failure of this file
                return done, exc
        return done, None

    def _copy_batch(self, copier: Copier, src_root: str, items: Sequence[tuple[str, int]]
                    ) -> list[tuple[RemoteFile, FileStat]]:
        """Copy what of items the helper can, up to the first file it could not (a name
        taken, a parent that is a file, a failure): those are left to `put_file_stat`."""
        try:  # opened as the srcs' paths would be: a link to src_root is followed
            source = os.open(src_root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError:
            return []  # put_file_stat says what is wrong, file by file
        slots: dict[tuple[str, ...], tuple[int, _Slot, bool]] = {}
        jobs: list[Job] = []
        # parts, name, relpath, under its final name
        places: list[tuple[tuple[str, ...], str, str, bool]] = []
        done: list[tuple[RemoteFile, FileStat]] = []
        length = 0
        try:
            for relpath, size in items:
                *folder, name = relpath.split("/")
                parts = (*self._parts, *folder)
                if parts not in slots:
                    try:
                        slot = self._folders.acquire(parts)
                    except (UploadError, OSError):
                        break  # a parent is a file or a link: put_file_stat says which, and why
                    final = self._folders.begin_final(slot)
                    slots[parts] = (len(slots), slot, final)
                index, slot, final = slots[parts]
                length += len(relpath) + len(name) + 64
                if length > MAX_MESSAGE:
                    break
                under_final = final and size < STAGE_FILE_MAX
                jobs.append((index, name if under_final else temp_name(), relpath))
                places.append((parts, name, relpath, under_final))
            if not jobs:
                return done
            fds = [slot.fd for _, slot, _ in slots.values()]
            try:
                answers = copier.copy(jobs, fds, source)
            except CopierGone as gone:
                self._copiers.broken(copier)
                for index, name, _ in gone.unanswered:  # the one it was on, half written
                    with contextlib.suppress(OSError):
                        os.unlink(name, dir_fd=fds[index])
                return done
            written: list[_Pending] = []
            size = 0
            new = tuple.__new__  # by the thousand (see Copier.copy)
            for (_, written_as, _), (parts, name, relpath, under_final), answer in zip(
                    jobs, places, answers, strict=False):
                if not isinstance(answer, Copied):
                    break  # put_file_stat tries it again, and raises what it meets
                sha256, copied, source_stat, stat = answer
                row = (*stat[:4], sha256) if under_final else None
                written.append(new(_Pending, (
                    parts, "" if under_final else written_as, name, relpath, copied, sha256,
                    slots[parts][1].where, row)))
                size += copied
                done.append((new(RemoteFile, (copied, sha256)), new(FileStat, source_stat)))
            full = self._writes.add_all(written, size)
        finally:
            os.close(source)
            for _, slot, final in slots.values():
                if final:
                    self._folders.end_final()
                self._folders.release(slot)
        if full:
            self._writes.commit(final=False)
        return done

    def delete_file(self, relpath: str) -> None:
        """Remove relpath and its row; remove folders it leaves empty (root too, when it is
        below `within`)."""
        *folder, name = check_relpath(relpath).split("/")
        self._writes.commit(final=False)  # a pending write of relpath must not outlive this
        self._folders.close_idle()  # folders it empties are removed: no descriptor kept
        try:
            chain = open_chain(self._base, (*self._parts, *folder), create=False)
        except NotADirectoryError:
            chain = None  # a parent is a file: relpath cannot exist
        if chain is not None:
            with chain:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(name, dir_fd=chain.fd)
                # Climb up to (not including) the datastore folder, removing the folders
                # left empty (the target folder too, once its last file is gone).
                for depth in range(len(chain.parts), 0, -1):
                    try:
                        os.rmdir(chain.parts[depth - 1], dir_fd=chain.fds[depth - 1])
                    except OSError:
                        break  # not empty (or already gone): stop climbing
        self._index.write({}, gone=[relpath])

    def flush(self, during: Callable[[], object] | None = None) -> None:
        """Commit every file written so far and make it durable. `during`, if given, is
        called once, on this thread, while the data goes to disk (apply_sync writes the
        hash cache there); what it raises is raised once the commit is done."""
        self._copiers.stop()  # they end while the commit waits on the disk
        try:
            self._folders.close_idle()
            self._writes.commit(final=True, during=during)
        finally:
            self._copiers.close()

    def close(self) -> None:
        """Flush, then close the index."""
        _close(self._writes, self._index, self._folders, self._copiers)

    def __enter__(self) -> FolderFileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close(writes: _Writes, index: _Index, folders: _Folders, copiers: _Copiers) -> None:
    try:
        copiers.close()
        folders.close_idle()
        if not index.closed:
            writes.commit(final=True)
    finally:
        index.close()


class FingerprintAhead:
    """A store's fingerprint being made by a forked child (see `fingerprint_ahead`); without
    a child, `result` makes it here."""

    def __init__(self, store: FolderFileStore) -> None:
        self._store = store
        self._pid = 0
        self._pipe = -1

    def start(self, chain: DirChain) -> None:
        """Fork a child that walks chain's folder and writes the stats to a pipe."""
        read_end, write_end = os.pipe()
        try:
            pid = os.fork()
        except OSError:
            os.close(read_end)
            os.close(write_end)
            return
        if pid == 0:  # the child: walk, hand the stats over, end without any clean-up
            status = 1
            try:
                os.close(read_end)
                data = memoryview(marshal.dumps(stat_files(chain, TEMP_PREFIX), 2))
                while data:
                    data = data[os.write(write_end, data):]
                status = 0
            finally:
                os._exit(status)
        os.close(write_end)
        self._pid, self._pipe = pid, read_end

    def result(self) -> str | None:
        """The fingerprint (what `FolderFileStore.fingerprint` gives)."""
        if not self._pid:
            return self._store.fingerprint()
        try:
            with open(self._pipe, "rb") as pipe:
                data = pipe.read()
        finally:
            self._pipe = -1
            ok = self._reap()
        if not ok:
            return self._store.fingerprint()
        return self._store._fingerprint_of(marshal.loads(data))

    def cancel(self) -> None:
        """Drop it (the child, if still walking, ends on the closed pipe)."""
        if self._pipe >= 0:
            os.close(self._pipe)
            self._pipe = -1
        if self._pid:
            self._reap()

    def _reap(self) -> bool:
        _, status = os.waitpid(self._pid, 0)
        self._pid = 0
        return os.waitstatus_to_exitcode(status) == 0


class _Slot:
    """A folder's descriptor, shared by the writers into it."""

    __slots__ = ("fd", "holders", "live", "staged", "where")

    def __init__(self, fd: int, where: tuple[str, ...], staged: bool) -> None:
        self.fd = fd
        self.holders = 1
        self.staged = staged  # inside the stage (see _Stage)
        self.live = True  # still given to new writers (not once its stage is being published)
        self.where = where  # the folder as opened, below the base: through the stage's name


@dataclass(frozen=True, slots=True)
class _Stage:
    """The store's first folder missing from the datastore folder, made under a temp name.

    Small files for it are written there under their final names, and the whole folder is
    renamed into place at the commit: one rename for them all, where a rename and a stat
    per file cost as much as copying them. Nothing in it is listed (a temp name), and one
    left by a killed process is deleted like a temp file (see `atomic.remove_stale_temp`).
    """

    key: tuple[str, ...]  # the missing folder (below the base), at or above the root
    name: str  # its temp name in the folder key[:-1]
    ino: int  # of the folder made, checked before the rename
    dev: int


class _Folders:
    """Descriptors of the folders files were lately written to, shared by the writers, and
    the stage of a store whose root does not exist yet (see _Stage).

    Opening a folder is a walk from the base, a descriptor per level (see `dirfd`); files
    of one folder are written one after another, so the folder's descriptor is kept for the
    next one. At most MAX are kept; one is closed only when no writer holds it.
    """

    MAX = 32

    def __init__(self, base: str, root: tuple[str, ...]) -> None:
        self._base = base
        self._root = root
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)  # no write under a final name running
        self._make = threading.Lock()  # folders are opened, and the stage made, one at a time
        self._open: dict[tuple[str, ...], _Slot] = {}  # parts -> slot, least recently used first
        self._stage: _Stage | None = None
        # Off until `allow_stage`; a root equal to the base is never staged (the stage would
        # sit outside the base).
        self._root_seen = True
        self._sealing = False
        self._final_writers = 0

    def allow_stage(self) -> None:
        """Stage the root if it turns out to be missing (see _Stage)."""
        with self._make:
            self._root_seen = not self._root

    def acquire(self, parts: tuple[str, ...]) -> _Slot:
        """The slot of base/parts (made if missing, in the stage if the root is missing);
        give it back with `release`."""
        with self._lock:
            slot = self._open.pop(parts, None)
            if slot is not None:
                slot.holders += 1
                self._open[parts] = slot  # most recently used last
                return slot
        with self._make:
            with self._lock:  # opened by another writer while this one waited
                slot = self._open.get(parts)
                if slot is not None:
                    slot.holders += 1
                    return slot
            stage = self._stage or self._new_stage()
            where = parts
            if stage is not None and parts[:len(stage.key)] == stage.key:
                where = (*stage.key[:-1], stage.name, *parts[len(stage.key):])
            chain = open_chain(self._base, where, create=True)
            assert chain is not None  # create=True never gives None
            fd = chain.fds.pop()
            chain.close()  # the folders above it are not needed any more
            slot = _Slot(fd, where, staged=where != parts)
            with self._lock:
                self._open[parts] = slot
        return slot

    def _new_stage(self) -> _Stage | None:
        """Stage the first missing folder down to the root, if one is missing."""
        if self._root_seen:
            return None
        for depth in range(1, len(self._root) + 1):
            chain = open_chain(self._base, self._root[:depth], create=False)
            if chain is not None:
                chain.close()
                continue
            parent = open_chain(self._base, self._root[:depth - 1], create=True)
            assert parent is not None
            with parent:
                for entry in list(os.scandir(parent.fd)):  # a killed writer's stage
                    if entry.name.startswith(TEMP_PREFIX) and entry.is_dir(follow_symlinks=False):
                        remove_stale_temp(entry.name, parent.fd)
                name = temp_name()
                os.mkdir(name, 0o777, dir_fd=parent.fd)
                made = os.stat(name, dir_fd=parent.fd, follow_symlinks=False)
            self._stage = _Stage(self._root[:depth], name, made.st_ino, made.st_dev)
            return self._stage
        self._root_seen = True
        return None

    def release(self, slot: _Slot) -> None:
        """Give back what `acquire` returned."""
        with self._lock:
            slot.holders -= 1
            if not slot.live:
                if slot.holders == 0:
                    os.close(slot.fd)
            elif len(self._open) > self.MAX:
                self._close_idle(len(self._open) - self.MAX)

    def begin_final(self, slot: _Slot) -> bool:
        """Whether a file may be written under its final name in slot's folder, now: only
        in the stage, and not once its commit began; if so, call `end_final` after."""
        with self._lock:
            if not slot.staged or not slot.live or self._sealing:
                return False
            self._final_writers += 1
            return True

    def end_final(self) -> None:
        """The write `begin_final` allowed has ended (its pending entry recorded)."""
        with self._lock:
            self._final_writers -= 1
            if not self._final_writers:
                self._idle.notify_all()

    @contextlib.contextmanager
    def sealed(self, take: Callable[[], _T]) -> Iterator[tuple[_Stage | None, _T]]:
        """The stage, once no write under a final name runs in it and none can start, and
        what `take()` returns, called then, while no stage can be made (so what it takes
        holds no file of a stage other than this one). With a stage, no folder is opened
        until the block ends (it publishes the stage)."""
        self._make.acquire()
        try:
            stage = self._stage
            if stage is not None:
                with self._lock:
                    self._sealing = True
                    for parts, slot in list(self._open.items()):
                        if slot.staged:  # its writers go on with temp files, renamed later
                            del self._open[parts]
                            slot.live = False
                            if slot.holders == 0:
                                os.close(slot.fd)
                    while self._final_writers:
                        self._idle.wait()
                self._stage = None
            taken = take()
        except BaseException:
            with self._lock:
                self._sealing = False
            self._make.release()
            raise
        if stage is None:  # nothing to hold back
            self._make.release()
            yield None, taken
            return
        try:
            yield stage, taken
        finally:
            with self._lock:
                self._sealing = False
            self._make.release()

    def close_idle(self) -> None:
        """Close every descriptor no writer holds."""
        with self._lock:
            self._close_idle(len(self._open))

    def _close_idle(self, count: int) -> None:
        for parts, slot in list(self._open.items()):  # least recently used first
            if count <= 0:
                break
            if slot.holders == 0:
                del self._open[parts]
                os.close(slot.fd)
                count -= 1


class _Copiers:
    """The helper processes of one store (see `copier`), one per writer thread at most,
    started as writers first ask, kept until `close`. Off until `enable`, and for good once
    a helper could not start or died."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._lock = threading.Lock()
        self._idle: list[Copier] = []
        self._stopped: list[Copier] = []  # told to end, not yet waited for
        self._started = 0
        self._enabled = False

    def enable(self) -> None:
        with self._lock:
            self._enabled = available()

    def take(self) -> Copier | None:
        """An idle helper, a new one, or None (off, or as many as the limit busy)."""
        with self._lock:
            if self._idle:
                return self._idle.pop()
            if not self._enabled or self._started >= self._limit:
                return None
            self._started += 1
        try:
            return Copier()
        except OSError:
            with self._lock:
                self._started -= 1
                self._enabled = False
            return None

    def give_back(self, copier: Copier | None) -> None:
        if copier is not None:
            with self._lock:
                if copier.alive:
                    self._idle.append(copier)
                    return
                self._started -= 1
            copier.close()

    def broken(self, copier: Copier) -> None:
        """copier died: no new helper is started for this store."""
        copier.alive = False
        with self._lock:
            self._enabled = False

    def stop(self) -> None:
        """Tell every idle helper to end (all are idle once no write runs); `close` waits
        for them."""
        with self._lock:
            idle, self._idle = self._idle, []
            self._started -= len(idle)
            self._stopped += idle
        for copier in idle:
            copier.stop()

    def close(self) -> None:
        """Stop every idle helper and wait for them to end."""
        self.stop()
        with self._lock:
            stopped, self._stopped = self._stopped, []
        for copier in stopped:
            copier.close()


class _Pending(NamedTuple):
    """A file written, not yet published (made by the thousand: a named tuple)."""

    folder: tuple[str, ...]  # where it is published, below the base
    tmp: str  # its temp name there; "" if written under its final name in the stage
    name: str
    relpath: str
    size: int
    sha256: str
    where: tuple[str, ...]  # the folder it was written in (through the stage's temp name)
    row: _Row | None = None  # written under its final name: its stat, which a rename of
    # the stage keeps


class _Writes:
    """Files written and not yet published, and the commits that publish them."""

    def __init__(self, base: str, root: tuple[str, ...], index: _Index,
                 folders: _Folders) -> None:
        self._base = base
        self._root = root
        self._index = index
        self._folders = folders
        self._lock = threading.Lock()  # guards the pending list
        self._commit_lock = threading.Lock()  # one commit at a time
        self._pending: list[_Pending] = []
        self._bytes = 0
        # folders (parts below base) renamed into since the last final commit
        self._unsynced: set[tuple[str, ...]] = set()
        self._added = 0
        self._early_at = 0  # files added at which the data written is sent to disk early

    def flush_early_at(self, files: int) -> None:
        """Once `files` more files are added, start putting what is written on the disk, on
        a thread, while the rest are written: the commit's wait is then for the rest only."""
        with self._lock:
            self._early_at = self._added + files

    def add(self, pending: _Pending) -> bool:
        """Record a file written; True when enough are pending to commit them."""
        return self.add_all([pending], pending.size)

    def add_all(self, written: list[_Pending], size: int) -> bool:
        """Record files written (of `size` bytes in all); True when enough are pending to
        commit them."""
        with self._lock:
            self._pending += written
            self._bytes += size
            before, self._added = self._added, self._added + len(written)
            if before < self._early_at <= self._added:
                threading.Thread(target=_flush_ahead, args=(self._base,), daemon=True).start()
            return len(self._pending) >= COMMIT_FILES or self._bytes >= COMMIT_BYTES

    def commit(self, *, final: bool, during: Callable[[], object] | None = None) -> None:
        """Publish the pending files: data to disk, renames, index rows. `final` also
        makes the renames done since the last final commit durable. `during`: see
        FolderFileStore.flush."""
        errors: list[BaseException] = []
        later = (lambda: _run_into(errors, during)) if during is not None else None
        with self._commit_lock:
            with self._folders.sealed(self._take) as (stage, batch):
                if batch or stage is not None:
                    self._publish(batch, stage, later)
                    later = None
            if later is not None:
                later()
            if final and self._unsynced:
                make_durable(self._base, [], [os.path.join(self._base, *folder)
                                              for folder in sorted(self._unsynced)])
                self._unsynced = set()
        if errors:
            raise errors[0]

    def _take(self) -> list[_Pending]:
        with self._lock:
            batch, self._pending, self._bytes = self._pending, [], 0
        return batch

    def _publish(self, batch: list[_Pending], stage: _Stage | None,
                 during: Callable[[], None] | None) -> None:
        in_stage = () if stage is None else (*stage.key[:-1], stage.name)
        folders: list[str] = []
        if stage is not None and len(batch) <= FSYNC_MAX:
            # an fsync each (a few files): the stage's folders too, before its rename
            made = {item.where[:depth] for item in batch if item.where[:len(in_stage)] == in_stage
                    for depth in range(len(in_stage), len(item.where) + 1)}
            folders = [os.path.join(self._base, *where) for where in sorted(made)]
        paths = _TempPaths(self._base, batch, in_stage)
        staged_rows = {item.relpath: item.row for item in batch
                       if not item.tmp and item.row is not None} if stage is not None else {}
        if len(staged_rows) > FSYNC_MAX or (during is not None and len(paths) > FSYNC_MAX):
            # The staged files' rows are known already: written while the syncfs waits on the
            # disk, then `during`'s writes, one after the other (two writers on two threads
            # are no faster: they share the interpreter lock). A row of a file whose stage
            # is not published is only a memo gone stale: the next listing drops it (file
            # absent) or reads the file (stat moved).
            errors: list[BaseException] = []
            durable = threading.Thread(target=_run_into, args=(
                errors, make_durable, self._base, paths, folders))
            durable.start()
            try:
                self._index.write(staged_rows, gone=())
                if during is not None:
                    during()
            finally:
                durable.join()
            if errors:
                raise errors[0]
        else:
            staged_rows = {}
            if during is not None:
                during()
            make_durable(self._base, paths, folders)
        rows: dict[str, _Row] = {}
        failure: UploadError | None = None
        merged = False
        if stage is not None:
            try:
                merged = self._rename_stage(stage)
            except (UploadError, OSError) as exc:
                failure = _as_upload_error(self._shown(stage.key), exc, self._base)
        by_folder: dict[tuple[str, ...], list[_Pending]] = {}
        for item in batch:
            if item.tmp or merged:
                by_folder.setdefault(item.folder, []).append(item)
            elif (failure is None and item.row is not None
                  and item.relpath not in staged_rows):  # published with its stage
                rows[item.relpath] = item.row
        for folder, items in by_folder.items():
            try:
                # Opened again, without following links: a folder swapped for a link since
                # the temp was written is refused here.
                chain = open_chain(self._base, folder, create=False)
            except (UploadError, OSError) as exc:
                failure = failure or _as_upload_error(items[0].relpath, exc, self._base)
                continue
            if chain is None:
                failure = failure or UploadError(
                    f"{items[0].relpath}: its folder vanished from the datastore folder "
                    f"{self._base} during the upload; apply again")
                continue
            with chain:
                for item in items:
                    try:
                        if item.tmp:
                            os.replace(item.tmp, item.name, src_dir_fd=chain.fd,
                                       dst_dir_fd=chain.fd)
                        rows[item.relpath] = _row(
                            os.stat(item.name, dir_fd=chain.fd, follow_symlinks=False),
                            item.sha256)
                    except OSError as exc:
                        if item.tmp:
                            with contextlib.suppress(FileNotFoundError):
                                os.unlink(item.tmp, dir_fd=chain.fd)
                        failure = failure or _as_upload_error(item.relpath, exc, self._base)
        # the folders renamed into, and those above them up to base (they may be new)
        renamed_into = list(by_folder)
        if stage is not None:
            renamed_into.append(stage.key[:-1])
        for folder in renamed_into:
            while folder not in self._unsynced:
                self._unsynced.add(folder)
                if not folder:
                    break
                folder = folder[:-1]
        self._index.write(rows, gone=())
        if failure is not None:
            raise failure

    def _rename_stage(self, stage: _Stage) -> bool:
        """Put the stage in place under its real name; False if it was, True if its files
        were moved one by one instead (a folder of that name appeared meanwhile)."""
        parent = open_chain(self._base, stage.key[:-1], create=False)
        if parent is None:
            raise FileNotFoundError(errno.ENOENT, "its folder vanished during the upload")
        with parent:
            made = os.stat(stage.name, dir_fd=parent.fd, follow_symlinks=False)
            if (made.st_ino, made.st_dev) != (stage.ino, stage.dev):
                raise OSError(errno.ESTALE, "replaced during the upload")
            try:
                os.rename(stage.name, stage.key[-1], src_dir_fd=parent.fd,
                          dst_dir_fd=parent.fd)
                return False
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR,
                                     errno.EISDIR):
                    raise
        self._merge_stage(stage)
        return True

    def _merge_stage(self, stage: _Stage) -> None:
        """Move every file of the stage to its real folder (made if missing, never through
        a link), then remove the stage's folders left empty."""
        moved: list[tuple[str, ...]] = []
        subs: list[tuple[str, ...]] = [()]
        while subs:
            sub = subs.pop()
            src = open_chain(self._base, (*stage.key[:-1], stage.name, *sub), create=False)
            if src is None:
                continue
            with src:
                moved.append(sub)
                dst = open_chain(self._base, (*stage.key, *sub), create=True)
                assert dst is not None
                with dst:
                    for entry in list(os.scandir(src.fd)):
                        if entry.is_dir(follow_symlinks=False):
                            subs.append((*sub, entry.name))
                        else:
                            os.replace(entry.name, entry.name, src_dir_fd=src.fd,
                                       dst_dir_fd=dst.fd)
        for sub in reversed(moved):  # deepest first
            with contextlib.suppress(OSError):
                parent = open_chain(self._base, (*stage.key[:-1], stage.name, *sub[:-1])
                                    if sub else stage.key[:-1], create=False)
                if parent is not None:
                    with parent:
                        os.rmdir(sub[-1] if sub else stage.name, dir_fd=parent.fd)

    def _shown(self, parts: tuple[str, ...]) -> str:
        return "/".join(parts[len(self._root):]) or "/".join(parts)


def _flush_ahead(base: str) -> None:
    """syncfs of base's filesystem, its failure ignored: only a head start for the commit's
    own flush, which reports what fails."""
    with contextlib.suppress(OSError):
        sync_filesystem(base)


def _run_into(errors: list[BaseException], fn: Callable[..., object], *args: object) -> None:
    """fn(*args) on a helper thread; what it raises goes into `errors`."""
    try:
        fn(*args)
    except BaseException as exc:
        errors.append(exc)


class _TempPaths(Sequence[str]):
    """The files of a batch as paths where they are now, each made only when asked for: a
    syncfs needs their number only, an fsync per file (a few files) their paths. A file
    written in the stage being published is there; one written in an earlier stage is
    where that stage was put."""

    def __init__(self, base: str, batch: list[_Pending], in_stage: tuple[str, ...]) -> None:
        self._base = base
        self._batch = batch
        self._in_stage = in_stage

    def __len__(self) -> int:
        return len(self._batch)

    @overload
    def __getitem__(self, index: int) -> str: ...

    @overload
    def __getitem__(self, index: slice) -> list[str]: ...

    def __getitem__(self, index: int | slice) -> str | list[str]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        item = self._batch[index]
        stage = self._in_stage
        folder = item.where if stage and item.where[:len(stage)] == stage else item.folder
        return os.path.join(self._base, *folder, item.tmp or item.name)


def _as_upload_error(relpath: str, exc: BaseException, base: str) -> UploadError:
    if isinstance(exc, UploadError):
        return exc
    reason = (
        "is a folder in the datastore folder"
        if isinstance(exc, IsADirectoryError)
        else f"cannot be written ({getattr(exc, 'strerror', None) or exc}) in the datastore "
        "folder"
    )
    return UploadError(f"{relpath}: {reason} {base}; "
                       "set delete_extra: true or remove what is in the way")


class _Index:
    """The SQLite memo of one store's files; safe to use from several threads."""

    def __init__(self, db_path: Path, root_key: str) -> None:
        self.key = root_key
        self._lock = threading.Lock()
        # Only a memo (see module doc): a damaged file is set aside and started afresh.
        self._db: sqlite3.Connection | None = statedb.connect(
            db_path, "upload index", schema=(_SCHEMA,), rebuild=True, timeout=10.0)
        # A read-only state folder: listings hash what the memo misses and write nothing.
        self._read_only = statedb.is_read_only(self._db)

    @property
    def closed(self) -> bool:
        return self._db is None

    def load(self) -> dict[str, _Row]:
        """Every row of this root."""
        with self._lock:
            cursor = self._open().execute(
                "SELECT relpath, size, mtime_ns, ctime_ns, ino, sha256"
                " FROM upload_folder_index WHERE root = ?",
                (self.key,),
            )
            return {row[0]: row[1:] for row in cursor}

    def write(self, rows: dict[str, _Row], gone: Iterable[str]) -> None:
        """Write `rows` and delete the rows of the relpaths in `gone`, in one commit."""
        inserts = [(self.key, relpath, *row) for relpath, row in rows.items()]
        deletes = [(self.key, relpath) for relpath in gone]
        if (not inserts and not deletes) or self._read_only:
            return
        with self._lock:
            db = self._open()
            with db:
                db.execute("BEGIN")
                statedb.replace_rows(db, "upload_folder_index", inserts)
                db.executemany(
                    "DELETE FROM upload_folder_index WHERE root = ? AND relpath = ?", deletes
                )
            if len(inserts) >= statedb.CHECKPOINT_ROWS:  # now, not at close (see statedb)
                statedb.checkpoint(db)

    def close(self) -> None:
        """Close; later calls do nothing."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def _open(self) -> sqlite3.Connection:
        if self._db is None:
            raise UploadError("the upload index is closed")
        return self._db
