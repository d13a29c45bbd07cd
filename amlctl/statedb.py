"""Opening amlctl's SQLite files (state.db, engine.db, blobs.db, hashcache.db) so that a
broken one is a one-line error saying what is wrong and what to do, never a traceback.

- `connect(path, what, ...)` opens (and creates) a database in WAL mode with its schema.
  A damaged file, a folder in its place, a read-only folder or a full disk raise
  `StateError`. A cache (`rebuild=True`) that is damaged is moved aside to `<name>.damaged`
  and started afresh, as losing it costs only time.
- In a state folder this process cannot write (a read-only mount, another user's folder),
  an existing database is opened read-only, so commands that only read (status, runs,
  logs) still work; `is_read_only(conn)` tells, and a write through such a connection
  raises sqlite3 "attempt to write a readonly database", which `explain` words.
- `explain(exc, path, what)` turns any sqlite3 or OS error met later (disk full during an
  apply) into the same kind of message.
- `replace_rows(conn, table, rows)` writes thousands of rows fast (see there).
"""

from __future__ import annotations

import errno
import itertools
import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import quote

from amlctl.errors import StateError

_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DENIED = (errno.EROFS, errno.EACCES, errno.EPERM)


def connect(
    path: Path,
    what: str,
    *,
    schema: Sequence[str] = (),
    advice: str = "",
    rebuild: bool = False,
    timeout: float = 30.0,
    synchronous: str = "NORMAL",
    isolation_level: str | None = None,
) -> sqlite3.Connection:
    """Open `path` (described as `what`, e.g. "local backend state") with its schema.

    `advice` says what to do when the file is damaged (for files that are not caches).
    Raises StateError (see module doc).
    """
    if path.is_dir():
        raise StateError(f"{path} is a folder where amlctl keeps its {what} database: move it "
                         "away and run the command again")
    if path.parent.exists() and not path.parent.is_dir():
        raise StateError(f"{path.parent}: the state folder is a file, not a folder (is "
                         "AMLCTL_HOME right?)")
    if not _writable(path):
        return _connect_read_only(path, what, isolation_level)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return _open(path, schema, timeout, synchronous, isolation_level)
    except sqlite3.DatabaseError as exc:
        if rebuild and _damaged(exc):
            os.replace(path, path.with_name(path.name + ".damaged"))
            for suffix in ("-wal", "-shm"):
                path.with_name(path.name + suffix).unlink(missing_ok=True)
            try:
                return _open(path, schema, timeout, synchronous, isolation_level)
            except (sqlite3.Error, OSError) as again:
                raise explain(again, path, what, advice) from None
        raise explain(exc, path, what, advice) from None
    except OSError as exc:
        raise explain(exc, path, what, advice) from None


def is_read_only(conn: sqlite3.Connection) -> bool:
    """Whether `conn` was opened read-only by `connect`."""
    return bool(conn.execute("PRAGMA query_only").fetchone()[0])


def explain(exc: BaseException, path: Path, what: str, advice: str = "") -> StateError:
    """A StateError for `exc`, met while using the `what` database at `path`."""
    text = str(exc)
    lowered = text.lower()
    number = getattr(exc, "errno", None)
    if number in _FULL or "disk is full" in lowered or (
            "disk i/o error" in lowered and _full(path)):
        return StateError(f"{path}: cannot write the {what} database: no space left on the "
                          f"device (or a file size limit hit); free some space and run the "
                          "command again (what was done so far is recorded)")
    if number in _DENIED or "readonly" in lowered or "read-only" in lowered or (
            "unable to open" in lowered and not _writable(path)):
        return StateError(f"{path.parent}: the state folder is read-only for this user; this "
                          "command needs to write there: run it where the folder is writable "
                          "(status, runs and logs work read-only)")
    if _damaged(exc):
        return StateError(f"{path}: the {what} database is damaged ({text}); "
                          + (advice or "move it aside and run the command again"))
    if "disk i/o error" in lowered:
        return StateError(f"{path}: the disk failed while using the {what} database ({text}): "
                          "check the disk (is it full?) and run the command again")
    return StateError(f"{path}: cannot use the {what} database: {text}")


def describe_environment_error(exc: BaseException) -> str | None:
    """One line for an error caused by the machine (disk full, read-only or damaged files)
    that reached the command line without a StateError; None for anything else (a bug)."""
    number = getattr(exc, "errno", None)
    where = getattr(exc, "filename", None)
    prefix = f"{where}: " if where else ""
    if number in _FULL:
        return (f"{prefix}no space left on the device (or a file size limit hit); free some "
                "space and run the command again")
    if number == errno.EROFS:
        return f"{prefix}the file system is read-only; run the command where it is writable"
    if number in (errno.EACCES, errno.EPERM):
        return (f"{prefix}permission denied; run the command as a user who may write there "
                "(or point AMLCTL_HOME at a folder of yours)")
    if isinstance(exc, sqlite3.Error):
        lowered = str(exc).lower()
        if "disk is full" in lowered:
            return ("a database of the state folder could not be written: no space left on "
                    "the device; free some space and run the command again")
        if "readonly" in lowered or "read-only" in lowered:
            return ("a database of the state folder is read-only for this user; run the "
                    "command where the state folder is writable")
        if _damaged(exc) or "disk i/o error" in lowered:
            return (f"a database of the state folder cannot be read ({exc}); check the disk "
                    "and the files in the state folder")
    return None


def _damaged(exc: BaseException) -> bool:
    lowered = str(exc).lower()
    return isinstance(exc, sqlite3.DatabaseError) and (
        "not a database" in lowered or "malformed" in lowered or "encrypted" in lowered)


def _full(path: Path) -> bool:
    """Whether the file system holding `path` has no block left for us."""
    folder = path if path.is_dir() else path.parent
    try:
        return os.statvfs(folder).f_bavail == 0
    except OSError:
        return False


def _writable(path: Path) -> bool:
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # a folder still to make: its first existing parent decides
    if not os.access(folder, os.W_OK) or _read_only_mount(folder):
        return False
    return not path.exists() or os.access(path, os.W_OK)


# A write of at least this many rows is checkpointed at once (see `checkpoint`).
CHECKPOINT_ROWS = 1000
# Rows a statement of `replace_rows` carries: its parameters stay far below SQLite's limit
# (32,766 since 3.32) for tables of up to 60 columns.
ROWS_PER_STATEMENT = 500


def replace_rows(conn: sqlite3.Connection, table: str, rows: Sequence[Sequence[object]]
                 ) -> None:
    """INSERT OR REPLACE every row into `table` (all of one width), within the caller's
    transaction, ROWS_PER_STATEMENT rows a statement.

    `executemany` runs one statement a row, and each lets the interpreter lock go and takes
    it back: 10,000 rows of 7 columns took 12.5 ms this way and 8 ms in statements of 500
    rows, and two such writers on two threads, which took turns at every row (38-45 ms),
    took 17-21 ms."""
    if not rows:
        return
    one = "(" + ", ".join("?" * len(rows[0])) + ")"
    full = f"INSERT OR REPLACE INTO {table} VALUES " + ", ".join([one] * ROWS_PER_STATEMENT)
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start:start + ROWS_PER_STATEMENT]
        sql = full if len(chunk) == ROWS_PER_STATEMENT else (
            f"INSERT OR REPLACE INTO {table} VALUES " + ", ".join([one] * len(chunk)))
        conn.execute(sql, list(itertools.chain.from_iterable(chunk)))


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy what the WAL holds into the database file now, without waiting on readers.

    Closing the last connection does it anyway (and a big WAL makes the next open slower);
    after a large write at a moment the caller would otherwise wait on the disk (an
    upload's flush), it costs no time of its own.
    """
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _open(path: Path, schema: Sequence[str], timeout: float, synchronous: str,
          isolation_level: str | None) -> sqlite3.Connection:
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=isolation_level,
                           check_same_thread=False)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        # Commits survive a killed process without an fsync each (WAL): only a power cut
        # could lose the last ones.
        conn.execute(f"PRAGMA synchronous={synchronous}")
        for statement in schema:
            conn.execute(statement)
        if isolation_level is not None:
            conn.commit()
    except BaseException:
        conn.close()
        raise
    return conn


def _connect_read_only(path: Path, what: str, isolation_level: str | None = None
                       ) -> sqlite3.Connection:
    if not path.exists():
        raise StateError(f"{path.parent}: the state folder is read-only for this user and "
                         f"holds no {what} database yet; run the command where it is writable")
    base = "file:" + quote(str(path.absolute()))
    conn = None
    try:
        # mode=ro needs the WAL index (-shm) file; without it (the folder cannot hold a new
        # one) the file is read as immutable: nobody can write it there anyway.
        for uri in (f"{base}?mode=ro", f"{base}?immutable=1"):
            try:
                conn = sqlite3.connect(uri, uri=True, check_same_thread=False,
                                       isolation_level=isolation_level)
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
                break
            except sqlite3.OperationalError:
                if conn is not None:
                    conn.close()
                    conn = None
        if conn is None:
            raise StateError(f"{path}: cannot open the {what} database read-only")
        conn.execute("PRAGMA query_only=ON")
        return conn
    except sqlite3.DatabaseError as exc:
        if conn is not None:
            conn.close()
        raise explain(exc, path, what) from None
