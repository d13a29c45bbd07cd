"""The local hash cache: (path, size, mtime, ctime, inode, device) -> sha256, in SQLite.

Contract:
- `lookup` returns a sha256 only when every stat field matches what was recorded AND the
  entry is not "racy": a file whose mtime or ctime was within `racy_window_ns` of the moment
  it was hashed may have been written again in the same timestamp tick, unseen; such an
  entry is a doubt, so the caller hashes the file again (as git does with its index). The
  default window, 2 s, covers the coarsest timestamps in common use (FAT, some network
  shares); local Linux filesystems tick in milliseconds.
- It is only a cache: a file that is not a database is set aside (`NAME.damaged`) and
  replaced by an empty one, commits are not fsynced (WAL, synchronous=NORMAL), and losing
  it costs one re-read of each file, never a wrong answer. In a read-only state folder it
  answers from the file and records nothing.
- One instance per thread; the sync functions use it from the calling thread only.
- The file may be shared by many uploads: keys are absolute paths.

It also keeps, per upload (src_dir and store), the memo of its last plan that found nothing
to do (`no_op_memo`, see `sync`): a digest of what that plan was made from and the
figures it gave, one row per upload.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

from amlctl import statedb
from amlctl.uploads.model import FileStat, LocalFile

RACY_WINDOW_NS = 2_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS hashes (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL,
    dev INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    hashed_at_ns INTEGER NOT NULL
) WITHOUT ROWID
"""

_MEMO_SCHEMA = """
CREATE TABLE IF NOT EXISTS upload_no_op_memo (
    upload TEXT PRIMARY KEY,
    local TEXT NOT NULL,
    remote TEXT NOT NULL,
    unchanged INTEGER NOT NULL,
    kept_extra INTEGER NOT NULL,
    remote_digest TEXT NOT NULL
) WITHOUT ROWID
"""


class NoOpMemo(NamedTuple):
    """What a plan that found nothing to do was made from (`local`: a digest of src_dir's
    files and the plan's options; `remote`: the store's fingerprint) and what it gave."""

    local: str
    remote: str
    unchanged: int
    kept_extra: int
    remote_digest: str


class HashCache:
    """sha256 of local files, trusted without reading them while their stat is unchanged."""

    def __init__(self, db_path: Path, *, racy_window_ns: int = RACY_WINDOW_NS) -> None:
        self.db_path = db_path
        self.racy_window_ns = racy_window_ns
        self._pending: list[tuple[Any, ...]] = []
        # Entries of warmed folders, in memory: path -> the row's other columns.
        self._memo: dict[str, tuple[Any, ...]] = {}
        self._warmed: tuple[str, ...] = ()
        self._counts: dict[str, int] = {}  # warmed prefix -> entries under it in _memo
        # Not a database (or damaged): it only ever held a cache, so it is set aside and
        # started afresh. WAL, synchronous=NORMAL: no fsync per commit.
        self._db = statedb.connect(db_path, "file hash cache", schema=(_SCHEMA, _MEMO_SCHEMA),
                                   rebuild=True, isolation_level="")
        # A read-only state folder: answer from the file, remember nothing new.
        self._read_only = statedb.is_read_only(self._db)

    def warm(self, root: Path) -> None:
        """Read every entry under `root` (absolute) in one query; later lookups there are
        answered from memory. For thousands of lookups, it is many times faster."""
        prefix = _prefix(root)
        if not self._is_warm(prefix):
            rows = self._rows_under(prefix, "*")
            self._memo.update({row[0]: row[1:] for row in rows})
            self._warmed = (*self._warmed, prefix)
            self._counts[prefix] = len(rows)

    def lookup(self, path: str, stat: FileStat) -> str | None:
        """The recorded sha256 of `path` if it is still that version of the file."""
        if self._is_warm(path):
            row = self._memo.get(path)
        else:
            row = self._db.execute(
                "SELECT size, mtime_ns, ctime_ns, ino, dev, sha256, hashed_at_ns"
                " FROM hashes WHERE path = ?",
                (path,),
            ).fetchone()
        if row is None:
            return None
        if row[:5] != stat:  # FileStat is a tuple of these five columns, in this order
            return None
        _, mtime_ns, ctime_ns, _, _, sha256, hashed_at_ns = row
        if max(mtime_ns, ctime_ns) >= hashed_at_ns - self.racy_window_ns:
            return None
        return str(sha256)

    def lookup_all(self, files: Sequence[LocalFile]) -> list[str | None]:
        """`lookup` of each file, in order; the loop of a plan, kept tight."""
        memo, window, lookup = self._memo, self.racy_window_ns, self.lookup
        warmed = self._warmed
        out: list[str | None] = []
        append = out.append
        for _, path, stat in files:
            if not path.startswith(warmed):
                append(lookup(path, stat))
                continue
            row = memo.get(path)
            if row is None:
                append(None)
                continue
            # row: size, mtime_ns, ctime_ns, ino, dev, sha256, hashed_at_ns (see lookup)
            if (row[0] == stat[0] and row[1] == stat[1] and row[2] == stat[2]
                    and row[3] == stat[3] and row[4] == stat[4]
                    and max(row[1], row[2]) < row[6] - window):
                append(row[5])
            else:
                append(None)
        return out

    def record(self, path: str, stat: FileStat, sha256: str, hashed_at_ns: int) -> None:
        """Remember that `path`, as described by `stat`, had this sha256.

        `hashed_at_ns` is wall-clock time (time.time_ns) taken before the file was opened.
        Written to disk at `flush`/`close`.
        """
        self._pending.append(
            (path, stat.size, stat.mtime_ns, stat.ctime_ns, stat.ino, stat.dev, sha256,
             hashed_at_ns)
        )

    def forget_missing(self, root: Path, present: set[str]) -> None:
        """Drop entries under `root` (absolute) whose path is not in `present`."""
        prefix = _prefix(root)
        if self._counts.get(prefix) == len(present) and present <= self._memo.keys():
            # as many entries under root as present paths, all of them among the entries
            # (every present path is under root): the two sets are equal, none is missing
            return
        if self._is_warm(prefix):
            known = [p for p in self._memo if p.startswith(prefix)]
        else:
            known = [p for (p,) in self._rows_under(prefix, "path")]
        gone = [(p,) for p in known if p not in present]
        if gone and not self._read_only:
            self._db.executemany("DELETE FROM hashes WHERE path = ?", gone)
            self._db.commit()
            for (path,) in gone:
                self._forget(path)

    def no_op_memo(self, upload: str) -> NoOpMemo | None:
        """The memo recorded for `upload` by `record_no_op`, if any."""
        try:
            row = self._db.execute(
                "SELECT local, remote, unchanged, kept_extra, remote_digest FROM upload_no_op_memo"
                " WHERE upload = ?", (upload,)).fetchone()
        except sqlite3.OperationalError:
            return None  # a read-only file from before the memo existed: no such table
        return None if row is None else NoOpMemo(*row)

    def record_no_op(self, upload: str, memo: NoOpMemo | None) -> None:
        """Replace the memo of `upload` (None: drop it), written at once."""
        if self._read_only:
            return
        if memo is None:
            self._db.execute("DELETE FROM upload_no_op_memo WHERE upload = ?", (upload,))
        else:
            self._db.execute("INSERT OR REPLACE INTO upload_no_op_memo VALUES (?, ?, ?, ?, ?, ?)",
                             (upload, *memo))
        self._db.commit()

    def flush(self) -> None:
        """Write recorded entries to the file (many: into the database file itself, which
        closing would do otherwise; apply_sync flushes while the disk is busy anyway)."""
        for path, *row in self._pending:
            if self._is_warm(path):
                if path not in self._memo:
                    self._count(path, 1)
                self._memo[path] = tuple(row)
        if self._read_only:
            self._pending.clear()
        if self._pending:
            statedb.replace_rows(self._db, "hashes", self._pending)
            self._db.commit()
            if len(self._pending) >= statedb.CHECKPOINT_ROWS:
                statedb.checkpoint(self._db)
            self._pending.clear()

    def close(self) -> None:
        """Flush and close."""
        self.flush()
        self._db.close()

    def _forget(self, path: str) -> None:
        if self._memo.pop(path, None) is not None:
            self._count(path, -1)

    def _count(self, path: str, step: int) -> None:
        for prefix in self._warmed:  # nested uploads: a path may be under several
            if path.startswith(prefix):
                self._counts[prefix] += step

    def _is_warm(self, path: str) -> bool:
        return path.startswith(self._warmed)

    def _rows_under(self, prefix: str, columns: str) -> list[tuple[Any, ...]]:
        # Range scan on the primary key: every path that starts with prefix ("/" + 1 is "0").
        return self._db.execute(
            f"SELECT {columns} FROM hashes WHERE path >= ? AND path < ?",
            (prefix, prefix[:-1] + "0"),
        ).fetchall()

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _prefix(root: Path) -> str:
    return str(root).rstrip("/") + "/"
