"""`FileStore` over a plain folder, for the local backend.

`FolderFileStore(root, index_db)`: root is `<datastore folder>/<target_path>`; index_db a
SQLite file (it may be shared with other stores and other tables: this one is
`upload_folder_index`, keyed by root) holding (relpath, size, mtime_ns, inode, sha256) so
listing does not re-hash. The folder is the truth, the index only a memo:
- a file whose size, mtime or inode differs from its row (or has no row) is hashed during
  the listing and its row rewritten; this covers a process killed between the rename and the
  index write, and any change made behind our back;
- rows of files that are gone are dropped; rows of new files are written in batches (at
  most `INDEX_BATCH` rows late; all of them by `list_files`, `close`, or when the store is
  garbage-collected or the interpreter exits), in commits that are not fsynced (WAL,
  synchronous=NORMAL): a lost row only costs a re-hash;
- temp files (see `atomic`) are never listed, and those of dead processes are deleted;
- symlinks and special files inside the folder are not ours and are not listed.

A file cannot be written where the folder holds a folder of that name, or below a file of
a parent's name: `put_file` raises UploadError saying so (delete_extra resolves it, as the
sync deletes before it writes). Folders emptied by `delete_file` are removed.
"""

from __future__ import annotations

import os
import sqlite3
import stat as statmod
import threading
import weakref
from collections.abc import Iterable
from pathlib import Path

from amlctl.uploads.atomic import hash_file, is_temp_name, remove_stale_temp, write_atomic
from amlctl.uploads.errors import UploadError
from amlctl.uploads.model import RemoteFile
from amlctl.uploads.store import check_relpath

INDEX_BATCH = 256

_SCHEMA = """
CREATE TABLE IF NOT EXISTS upload_folder_index (
    root TEXT NOT NULL,
    relpath TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    PRIMARY KEY (root, relpath)
) WITHOUT ROWID
"""

_Row = tuple[int, int, int, str]  # size, mtime_ns, ino, sha256


class FolderFileStore:
    """The files under `root`, with their hashes memoised in `index_db` (see module doc)."""

    def __init__(self, root: Path, index_db: Path) -> None:
        self.root = root.absolute()
        self._index = _Index(index_db, str(self.root.resolve()))
        weakref.finalize(self, self._index.close)

    def list_files(self) -> dict[str, RemoteFile]:
        """Every complete file under root; hashes from the index, or read when in doubt."""
        rows = self._index.load()
        listing: dict[str, RemoteFile] = {}
        fixes: dict[str, _Row] = {}
        for relpath, path, st in self._walk():
            row = rows.pop(relpath, None)
            if row is not None and row[:3] == (st.st_size, st.st_mtime_ns, st.st_ino):
                listing[relpath] = RemoteFile(st.st_size, row[3])
                continue
            hashed = hash_file(path)  # the index does not vouch for this file: doubt
            listing[relpath] = RemoteFile(hashed.size, hashed.sha256)
            fixes[relpath] = (hashed.size, hashed.stat.mtime_ns, hashed.stat.ino, hashed.sha256)
        self._index.rewrite(fixes, gone=rows.keys())
        return listing

    def put_file(self, src: Path, relpath: str) -> RemoteFile:
        """Write src as relpath atomically (temp file, fsync, rename), then index it."""
        dest = self.root / check_relpath(relpath)
        try:
            written = write_atomic(src, dest)
        except (FileExistsError, NotADirectoryError) as exc:
            raise UploadError(
                f"{relpath}: a parent of it is a file in the datastore folder {self.root}; "
                "set delete_extra: true or remove that file"
            ) from exc
        except IsADirectoryError as exc:
            raise UploadError(
                f"{relpath}: is a folder in the datastore folder {self.root}; "
                "set delete_extra: true or remove that folder"
            ) from exc
        st = dest.stat()
        self._index.add(relpath, (written.size, st.st_mtime_ns, st.st_ino, written.sha256))
        return RemoteFile(written.size, written.sha256)

    def delete_file(self, relpath: str) -> None:
        """Remove relpath and its row; remove folders it leaves empty (up to root)."""
        path = self.root / check_relpath(relpath)
        path.unlink(missing_ok=True)
        self._index.rewrite({}, gone=[relpath])
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break  # not empty (or already gone): stop climbing
            parent = parent.parent

    def close(self) -> None:
        """Write the index rows still pending and close the index."""
        self._index.close()

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
                    elif is_temp_name(entry.name):
                        remove_stale_temp(Path(entry.path))
                    elif entry.is_file(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        if statmod.S_ISREG(st.st_mode):
                            found.append((prefix + entry.name, entry.path, st))
        return found


class _Index:
    """The SQLite memo of one store's files; safe to use from several threads."""

    def __init__(self, db_path: Path, root_key: str) -> None:
        self._key = root_key
        self._lock = threading.Lock()
        self._pending: list[tuple[str, str, int, int, int, str]] = []
        db_path.parent.mkdir(parents=True, exist_ok=True)
        self._db: sqlite3.Connection | None = sqlite3.connect(
            db_path, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.execute(_SCHEMA)

    def load(self) -> dict[str, _Row]:
        """Every row of this root, pending ones included."""
        with self._lock:
            db = self._write([])
            cursor = db.execute(
                "SELECT relpath, size, mtime_ns, ino, sha256 FROM upload_folder_index"
                " WHERE root = ?",
                (self._key,),
            )
            return {relpath: (size, mtime, ino, sha) for relpath, size, mtime, ino, sha in cursor}

    def add(self, relpath: str, row: _Row) -> None:
        """Remember a row; written within INDEX_BATCH rows."""
        with self._lock:
            self._pending.append((self._key, relpath, *row))
            if len(self._pending) >= INDEX_BATCH:
                self._write([])

    def rewrite(self, rows: dict[str, _Row], gone: Iterable[str]) -> None:
        """Write `rows` and delete the rows of the relpaths in `gone`, in one commit."""
        with self._lock:
            self._pending.extend((self._key, relpath, *row) for relpath, row in rows.items())
            self._write(gone)

    def close(self) -> None:
        """Write pending rows and close; later calls do nothing."""
        with self._lock:
            if self._db is not None:
                self._write([])
                self._db.close()
                self._db = None

    def _write(self, gone: Iterable[str]) -> sqlite3.Connection:
        """Write pending rows and delete `gone` in one commit; the caller holds the lock."""
        if self._db is None:
            raise UploadError("the upload index is closed")
        deletes = [(self._key, relpath) for relpath in gone]
        if self._pending or deletes:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO upload_folder_index VALUES (?, ?, ?, ?, ?, ?)",
                    self._pending,
                )
                self._db.executemany(
                    "DELETE FROM upload_folder_index WHERE root = ? AND relpath = ?", deletes
                )
            self._pending.clear()
        return self._db
