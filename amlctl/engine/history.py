"""The engine's own records beside the manifest: what it last applied, and a step journal.

`applied` holds the secret-free attributes amlctl last wrote per address, so a plan can show
drift (changes made outside amlctl). The journal records each primitive step as begun, then
done or failed, so an apply killed midway is detected and repaired by the next one.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from amlctl import statedb

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS applied (stack TEXT NOT NULL, address TEXT NOT NULL, "
    "attrs TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (stack, address))",
    "CREATE TABLE IF NOT EXISTS journal (id INTEGER PRIMARY KEY, stack TEXT NOT NULL, "
    "apply_id TEXT NOT NULL, address TEXT NOT NULL, step TEXT NOT NULL, state TEXT NOT NULL, "
    "detail TEXT, at REAL NOT NULL)",
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
            state_dir / "engine.db", "engine history", schema=_SCHEMA,
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

    def interrupted(self) -> list[tuple[str, str]]:
        """(address, step) of steps begun but never finished: an apply was killed there."""
        return self._conn.execute(
            "SELECT address, step FROM journal WHERE stack=? AND state='begun' ORDER BY id",
            (self.stack,)).fetchall()

    def clear_interrupted(self) -> None:
        """Mark interrupted steps as recovered once the repair has run."""
        self._conn.execute("UPDATE journal SET state='recovered' WHERE stack=? AND "
                           "state='begun'", (self.stack,))
