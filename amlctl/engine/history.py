"""The local state store: SQLite beside the manifest (what was applied, a step journal, the
stack's identity) and a kernel lock.

`applied` holds the secret-free attributes amlctl last wrote per address, so a plan can show
drift (changes made outside amlctl). The journal records each primitive step as begun, then
done or failed, so an apply killed midway is detected and repaired by the next one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from amlctl import statedb
from amlctl.engine.state import StateStore, check_origin

ENGINE_DB = "engine.db"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS applied (stack TEXT NOT NULL, address TEXT NOT NULL, "
    "attrs TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (stack, address))",
    "CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY, stack TEXT NOT NULL, "
    "apply_id TEXT NOT NULL, address TEXT NOT NULL, step TEXT NOT NULL, state TEXT NOT NULL, "
    "detail TEXT, at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS identity (stack TEXT PRIMARY KEY, id TEXT NOT NULL, "
    "origin TEXT NOT NULL)",
)


class History:
    """Applied attributes and the step journal of one stack, in `<state_dir>/engine.db`."""

    def __init__(self, state_dir: Path, stack: str) -> None:
        self.stack = stack
        # Executor threads share the connection; the lock keeps each insert and its rowid
        # together.
        self._lock = threading.Lock()
        # WAL, synchronous=NORMAL: commits survive a killed process without an fsync each
        # (three syncs per step made large applies disk-bound). A damaged file, a folder in
        # its place, a read-only folder or a full disk: a StateError saying what to do.
        self._conn = statedb.connect(
            state_dir / ENGINE_DB, "engine history", schema=_SCHEMA,
            advice="move it aside to start it afresh: the workspace is untouched; plans "
                   "then show no drift history until the next apply")

    def close(self) -> None:
        """Close the database."""
        self._conn.close()

    def applied(self) -> dict[str, dict[str, Any]]:
        """Last applied attributes by address."""
        rows = self._conn.execute("SELECT address, attrs FROM applied WHERE stack=?",
                                  (self.stack,)).fetchall()
        return {address: json.loads(attrs) for address, attrs in rows}

    def record_applied(self, address: str, attrs: dict[str, Any] | None) -> None:
        """Remember what was applied to `address` (None: it was deleted)."""
        with self._lock:
            if attrs is None:
                self._conn.execute("DELETE FROM applied WHERE stack=? AND address=?",
                                   (self.stack, address))
            else:
                self._conn.execute(
                    "INSERT OR REPLACE INTO applied VALUES (?,?,?,?)",
                    (self.stack, address, json.dumps(attrs, sort_keys=True), time.time()))

    def begin(self, apply_id: str, address: str, step: str) -> int:
        """Journal a step as begun; returns its id for `end`."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO journal (stack, apply_id, address, step, state, at) "
                "VALUES (?,?,?,?,'begun',?)", (self.stack, apply_id, address, step, time.time()))
            return int(cursor.lastrowid or 0)

    def end(self, entry: int, ok: bool, detail: str | None = None) -> None:
        """Mark a journalled step done or failed."""
        with self._lock:
            self._conn.execute("UPDATE journal SET state=?, detail=?, at=? WHERE id=?",
                               ("done" if ok else "failed", detail, time.time(), entry))

    def forget_applied(self) -> int:
        """Drop the whole applied record; returns how many addresses it held."""
        with self._lock:
            return self._conn.execute("DELETE FROM applied WHERE stack=?",
                                      (self.stack,)).rowcount

    def identity(self) -> dict[str, Any] | None:
        """The recorded identity of the stack, None before its first apply."""
        try:
            row = self._conn.execute("SELECT id, origin FROM identity WHERE stack=?",
                                     (self.stack,)).fetchone()
        except sqlite3.OperationalError:  # read-only, from before identities were recorded
            return None
        return {"id": row[0], "origin": json.loads(row[1])} if row else None

    def set_identity(self, origin: dict[str, Any], stack_id: str | None = None) -> None:
        """Record which manifest this stack is (keeping its id unless one is given)."""
        current = self.identity()
        new_id = stack_id or (current or {}).get("id") or uuid.uuid4().hex
        with self._lock:
            self._conn.execute("INSERT OR REPLACE INTO identity VALUES (?,?,?)",
                               (self.stack, new_id, json.dumps(origin, sort_keys=True)))

    def interrupted(self) -> list[tuple[str, str]]:
        """(address, step) of steps begun but never finished: an apply was killed there."""
        return self._conn.execute(
            "SELECT address, step FROM journal WHERE stack=? AND state='begun' ORDER BY id",
            (self.stack,)).fetchall()

    def journal(self, limit: int = 200) -> list[dict[str, Any]]:
        """The latest journal entries, oldest first."""
        rows = self._conn.execute(
            "SELECT id, apply_id, address, step, state, detail, at FROM journal WHERE stack=? "
            "ORDER BY id DESC LIMIT ?", (self.stack, limit)).fetchall()
        keys = ("id", "apply_id", "address", "step", "state", "detail", "at")
        return [dict(zip(keys, row, strict=True)) for row in reversed(rows)]

    def clear_interrupted(self) -> None:
        """Mark interrupted steps as recovered once the repair has run."""
        self._conn.execute("UPDATE journal SET state='recovered' WHERE stack=? AND "
                           "state='begun'", (self.stack,))


class SqliteState(StateStore):
    """State in `<state_dir>/engine.db`, locked with a kernel lock on `<state_dir>/apply.lock`
    (the local backend's store; also what any backend without its own store uses)."""

    def __init__(self, state_dir: Path, stack: str) -> None:
        self.state_dir = state_dir
        self.stack = stack
        self.location = f"{state_dir / ENGINE_DB}"
        self._history: History | None = None
        self._origin: dict[str, Any] | None = None

    @property
    def history(self) -> History:
        """The database, opened on first use (a read-only command may never need it)."""
        if self._history is None:
            self._history = History(self.state_dir, self.stack)
        return self._history

    @contextmanager
    def lock(self, command: str, timeout: float = 0.0) -> Iterator[str]:
        from amlctl.engine.lock import kernel_lock

        with kernel_lock(self.state_dir, command, timeout) as lock_id:
            if self._origin is not None:  # another manifest may have applied meanwhile
                check_origin(self.stack, self.identity(), self._origin, self.location)
            yield lock_id

    def force_unlock(self, lock_id: str) -> tuple[dict[str, Any], str]:
        from amlctl.engine.lock import force_unlock

        holder = force_unlock(self.state_dir, lock_id)
        return holder, ("its holder had already exited, which released the kernel lock; its "
                        "leftover record was cleared")

    def identity(self) -> dict[str, Any] | None:
        if self._history is None and not (self.state_dir / ENGINE_DB).exists():
            return None
        return self.history.identity()

    def bind(self, origin: dict[str, Any]) -> None:
        self._origin = origin
        check_origin(self.stack, self.identity(), origin, self.location)

    def rebind(self, origin: dict[str, Any]) -> dict[str, Any]:
        old = self.identity() or {}
        self.history.set_identity(origin)
        self._origin = origin
        return old

    def _claim(self) -> None:
        """Record the identity with the first write."""
        if self._origin is not None and self.history.identity() is None:
            self.history.set_identity(self._origin)

    def applied(self) -> dict[str, dict[str, Any]]:
        if self._history is None and not (self.state_dir / ENGINE_DB).exists():
            return {}
        return self.history.applied()

    def record_applied(self, address: str, attrs: dict[str, Any] | None) -> None:
        self._claim()
        self.history.record_applied(address, attrs)

    def forget_applied(self) -> int:
        return self.history.forget_applied()

    def begin(self, apply_id: str, address: str, step: str) -> int:
        self._claim()
        return self.history.begin(apply_id, address, step)

    def end(self, entry: int, ok: bool, detail: str | None = None) -> None:
        self.history.end(entry, ok, detail)

    def interrupted(self) -> list[tuple[str, str]]:
        if self._history is None and not (self.state_dir / ENGINE_DB).exists():
            return []
        return self.history.interrupted()

    def clear_interrupted(self) -> None:
        self.history.clear_interrupted()

    def document(self) -> dict[str, Any]:
        journal = [] if self._history is None and not (self.state_dir / ENGINE_DB).exists() \
            else self.history.journal()
        return {"stack": self.stack, "location": self.location, "identity": self.identity(),
                "applied": {a: {"attrs": attrs} for a, attrs in self.applied().items()},
                "journal": journal}

    def close(self) -> None:
        if self._history is not None:
            self._history.close()
            self._history = None
