"""`FileStore` over a plain folder, for the local backend.

`FolderFileStore(root, index_db)`: root is `<datastore folder>/<target_path>`; index_db a
SQLite file (it may be shared with other stores and other tables: this one is
`upload_folder_index`, keyed by root) holding (relpath, size, mtime_ns, ctime_ns, inode,
sha256) so listing does not re-hash.

Writes are batched to make them durable cheaply: `put_file` streams src into a temp file
beside its destination and returns; the files written become visible together at the next
commit, which first puts their data on disk (see `atomic.make_durable`), then renames each
temp over its destination. A commit happens every `COMMIT_FILES` files or `COMMIT_BYTES`
bytes, and at `flush`, `list_files` and `close` (also when the store is garbage-collected or
the interpreter exits). `flush` also makes the renames durable. `apply_sync` calls `flush`
before it returns or raises. A process killed before a commit leaves temp files only, never
a partial file under a final name; the next sync cleans the temps and sends those files
again.

The folder is the truth, the index only a memo:
- a file whose size, mtime, ctime or inode differs from its row (or has no row) is hashed
  during the listing and its row rewritten; this covers a process killed between the rename
  and the index write, and any change made behind our back;
- rows of files that are gone are dropped; index commits are not fsynced (WAL,
  synchronous=NORMAL): a lost row only costs a re-hash;
- temp files are never listed, and those of dead processes are deleted;
- symlinks and special files inside the folder are not ours and are not listed.

A file cannot be written below a file of a parent's name (`put_file` raises UploadError) nor
where the folder holds a folder of its name (the commit raises UploadError, naming it);
delete_extra resolves both, as the sync deletes before it writes. Folders emptied by
`delete_file` are removed.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import stat as statmod
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from amlctl.uploads.atomic import (
    TEMP_PREFIX,
    hash_file,
    make_durable,
    remove_stale_temp,
    write_temp,
)
from amlctl.uploads.errors import UploadError
from amlctl.uploads.model import RemoteFile
from amlctl.uploads.store import check_relpath

# Each commit waits for a syncfs, which on a busy machine costs as much as copying thousands of
# small files: a typical upload (up to this many files, COMMIT_BYTES) commits once, at the end.
COMMIT_FILES = 16384
COMMIT_BYTES = 256 << 20

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


def _row(st: os.stat_result, sha256: str) -> _Row:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, sha256)


class FolderFileStore:
    """The files under `root`, with their hashes memoised in `index_db` (see module doc)."""

    # Copies into a local folder are CPU-bound (hashing, Python per file): more threads than
    # cores only contend for the interpreter lock.
    parallelism = max(2, os.cpu_count() or 2)

    def __init__(self, root: Path, index_db: Path) -> None:
        self.root = root.absolute()
        self._root = str(self.root)
        self._folders: set[str] = set()  # folders known to exist (set.add is thread-safe)
        self._index = _Index(index_db, str(self.root.resolve()))
        self._writes = _Writes(self.root, self._index)
        weakref.finalize(self, _close, self._writes, self._index)

    def list_files(self) -> dict[str, RemoteFile]:
        """Every complete file under root; hashes from the index, or read when in doubt."""
        self._writes.commit(final=False)
        rows = self._index.load()
        listing: dict[str, RemoteFile] = {}
        fixes: dict[str, _Row] = {}
        for relpath, path, st in self._walk():
            row = rows.pop(relpath, None)
            if row is not None and row[:4] == (
                st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino
            ):
                listing[relpath] = RemoteFile(st.st_size, row[4])
                continue
            hashed = hash_file(path)  # the index does not vouch for this file: doubt
            listing[relpath] = RemoteFile(hashed.size, hashed.sha256)
            fixes[relpath] = (hashed.size, hashed.stat.mtime_ns, hashed.stat.ctime_ns,
                              hashed.stat.ino, hashed.sha256)
        self._index.write(fixes, gone=rows.keys())
        return listing

    def put_file(self, src: Path, relpath: str) -> RemoteFile:
        """Write src as relpath; visible whole at the next commit (see module doc)."""
        dest = os.path.join(self._root, check_relpath(relpath))
        folder = os.path.dirname(dest)
        if folder not in self._folders:  # one mkdir per folder, not per file
            try:
                os.makedirs(folder, exist_ok=True)
            except (FileExistsError, NotADirectoryError) as exc:
                raise UploadError(
                    f"{relpath}: a parent of it is a file in the datastore folder "
                    f"{self.root}; set delete_extra: true or remove that file"
                ) from exc
            self._folders.add(folder)
        tmp, hashed = write_temp(src, folder)
        self._writes.add(_Pending(tmp, dest, relpath, hashed.size, hashed.sha256))
        return RemoteFile(hashed.size, hashed.sha256)

    def delete_file(self, relpath: str) -> None:
        """Remove relpath and its row; remove folders it leaves empty (up to root)."""
        path = self.root / check_relpath(relpath)
        self._writes.commit(final=False)  # a pending write of relpath must not outlive this
        self._folders.clear()  # the folders it empties go too
        path.unlink(missing_ok=True)
        self._index.write({}, gone=[relpath])
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (or already gone): stop climbing
            parent = parent.parent

    def flush(self) -> None:
        """Commit every file written so far and make it durable."""
        self._writes.commit(final=True)

    def close(self) -> None:
        """Flush, then close the index."""
        _close(self._writes, self._index)

    def __enter__(self) -> FolderFileStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _walk(self) -> list[tuple[str, str, os.stat_result]]:
        """(relpath, path, lstat) of the regular files under root; stale temps deleted."""
        found: list[tuple[str, str, os.stat_result]] = []
        if not self.root.is_dir():
            return found
        pending = [(str(self.root), "")]
        while pending:
            folder, prefix = pending.pop()
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.is_dir(follow_symlinks=False):
                        pending.append((entry.path, prefix + entry.name + "/"))
                    elif entry.name.startswith(TEMP_PREFIX):
                        remove_stale_temp(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        if statmod.S_ISREG(st.st_mode):
                            found.append((prefix + entry.name, entry.path, st))
        return found


def _close(writes: _Writes, index: _Index) -> None:
    try:
        if not index.closed:
            writes.commit(final=True)
    finally:
        index.close()


@dataclass(frozen=True, slots=True)
class _Pending:
    tmp: str
    dest: str
    relpath: str
    size: int
    sha256: str


class _Writes:
    """Temp files written and not yet renamed, and the commits that publish them."""

    def __init__(self, root: Path, index: _Index) -> None:
        self._root = root
        self._index = index
        self._lock = threading.Lock()  # guards the pending list
        self._commit_lock = threading.Lock()  # one commit at a time
        self._pending: list[_Pending] = []
        self._bytes = 0
        self._unsynced: set[str] = set()  # folders renamed into since the last final commit

    def add(self, pending: _Pending) -> None:
        with self._lock:
            self._pending.append(pending)
            self._bytes += pending.size
            full = len(self._pending) >= COMMIT_FILES or self._bytes >= COMMIT_BYTES
        if full:
            self.commit(final=False)

    def commit(self, *, final: bool) -> None:
        """Publish the pending files: data to disk, renames, index rows. `final` also
        makes the renames done since the last final commit durable."""
        with self._commit_lock:
            with self._lock:
                batch, self._pending, self._bytes = self._pending, [], 0
            if batch:
                self._publish(batch)
            if final and self._unsynced:
                make_durable(self._root, [], sorted(self._unsynced))
                self._unsynced = set()

    def _publish(self, batch: list[_Pending]) -> None:
        make_durable(self._root, [p.tmp for p in batch])
        rows: dict[str, _Row] = {}
        failure: UploadError | None = None
        for item in batch:
            try:
                os.replace(item.tmp, item.dest)
                rows[item.relpath] = _row(os.stat(item.dest), item.sha256)
            except OSError as exc:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(item.tmp)
                reason = (
                    "is a folder in the datastore folder"
                    if isinstance(exc, IsADirectoryError)
                    else f"cannot be written ({exc.strerror or exc}) in the datastore folder"
                )
                failure = failure or UploadError(
                    f"{item.relpath}: {reason} {self._root}; "
                    "set delete_extra: true or remove what is in the way"
                )
        # the folders renamed into, and those above them up to root (they may be new)
        root = str(self._root)
        for item in batch:
            folder = os.path.dirname(item.dest)
            while folder not in self._unsynced and folder.startswith(root):
                self._unsynced.add(folder)
                folder = os.path.dirname(folder)
        self._index.write(rows, gone=())
        if failure is not None:
            raise failure


class _Index:
    """The SQLite memo of one store's files; safe to use from several threads."""

    def __init__(self, db_path: Path, root_key: str) -> None:
        self._key = root_key
        self._lock = threading.Lock()
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db: sqlite3.Connection | None = sqlite3.connect(
            db_path, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(_SCHEMA)

    @property
    def closed(self) -> bool:
        return self._db is None

    def load(self) -> dict[str, _Row]:
        """Every row of this root."""
        with self._lock:
            cursor = self._open().execute(
                "SELECT relpath, size, mtime_ns, ctime_ns, ino, sha256"
                " FROM upload_folder_index WHERE root = ?",
                (self._key,),
            )
            return {relpath: tuple(rest) for relpath, *rest in cursor}  # type: ignore[misc]

    def write(self, rows: dict[str, _Row], gone: Iterable[str]) -> None:
        """Write `rows` and delete the rows of the relpaths in `gone`, in one commit."""
        inserts = [(self._key, relpath, *row) for relpath, row in rows.items()]
        deletes = [(self._key, relpath) for relpath in gone]
        if not inserts and not deletes:
            return
        with self._lock:
            db = self._open()
            with db:
                db.execute("BEGIN")
                db.executemany(
                    "INSERT OR REPLACE INTO upload_folder_index VALUES (?, ?, ?, ?, ?, ?, ?)",
                    inserts,
                )
                db.executemany(
                    "DELETE FROM upload_folder_index WHERE root = ? AND relpath = ?", deletes
                )

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
