"""SQLite state of the local backend: workspaces, computes (node pools), datastores, uploads,
experiments and runs. One short transaction per operation; WAL so readers never block.

The store is plain data access. Node-pool arithmetic lives in `pool.py`, processes in
`runs/`. Every object row carries `owner`, the stack tag (amlctl.stack), or NULL when
amlctl did not create it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlctl import statedb

SCHEMA_VERSION = 1
WHAT = "local backend state"
DAMAGED_ADVICE = (
    "restore it from a backup, or move it aside with the workspaces/ folder beside it to "
    "start over (amlctl then plans to create everything again)")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS workspaces (
    id INTEGER PRIMARY KEY,
    subscription_id TEXT NOT NULL, resource_group TEXT NOT NULL, name TEXT NOT NULL,
    location TEXT NOT NULL, tags TEXT NOT NULL DEFAULT '{}', owner TEXT,
    created_at REAL NOT NULL,
    UNIQUE (subscription_id, resource_group, name)
);
CREATE TABLE IF NOT EXISTS objects (
    workspace_id INTEGER NOT NULL REFERENCES workspaces(id) ON DELETE CASCADE,
    kind TEXT NOT NULL, name TEXT NOT NULL,
    attrs TEXT NOT NULL, owner TEXT,
    created_at REAL NOT NULL, updated_at REAL NOT NULL,
    PRIMARY KEY (workspace_id, kind, name)
);
CREATE TABLE IF NOT EXISTS pools (
    workspace_id INTEGER NOT NULL, compute TEXT NOT NULL,
    busy_nodes INTEGER NOT NULL DEFAULT 0,
    warm_nodes INTEGER NOT NULL DEFAULT 0,
    idle_since REAL,
    PRIMARY KEY (workspace_id, compute)
);
CREATE TABLE IF NOT EXISTS allocations (
    run_id TEXT PRIMARY KEY, workspace_id INTEGER NOT NULL, compute TEXT NOT NULL,
    nodes INTEGER NOT NULL, since REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    workspace_id INTEGER NOT NULL, experiment TEXT NOT NULL, name TEXT NOT NULL,
    spec_hash TEXT NOT NULL, compute TEXT NOT NULL,
    status TEXT NOT NULL, error TEXT,
    created_at REAL NOT NULL, started_at REAL, ended_at REAL,
    supervisor_pid INTEGER, run_dir TEXT NOT NULL, owner TEXT,
    spec TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_by_hash ON runs (workspace_id, experiment, spec_hash);
"""


# Rows are read, never compared: eq=False spares compiling __eq__ and __hash__ on every
# start (their dict fields made them unhashable anyway). Immutable as before.
@dataclass(frozen=True, eq=False)
class WorkspaceRow:
    """A workspace of the local backend."""

    id: int
    subscription_id: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str]
    owner: str | None


@dataclass(frozen=True, eq=False)
class ObjectRow:
    """A compute, datastore, upload or experiment: its attributes as the backend holds them."""

    kind: str
    name: str
    attrs: dict[str, Any]
    owner: str | None


@dataclass(frozen=True, eq=False)
class RunRow:
    """A run as recorded by the local backend."""

    id: str
    experiment: str
    name: str
    spec_hash: str
    compute: str
    status: str
    error: str | None
    created_at: float
    started_at: float | None
    ended_at: float | None
    supervisor_pid: int | None
    run_dir: str
    owner: str | None
    spec: dict[str, Any]
    supervisor_started: int | None = None  # the supervisor's start time (see runs.procs)


class Store:
    """The local backend's database, at `<home>/state.db`.

    One connection shared by the executor's worker threads: a re-entrant lock serialises its
    use, since a second thread's BEGIN inside the first one's transaction would fail.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.RLock()
        self._conn = statedb.connect(path, WHAT, advice=DAMAGED_ADVICE)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA foreign_keys=ON")
        self.read_only = statedb.is_read_only(self._conn)
        if self.read_only:
            return  # reads only (status, runs, logs): the schema is what the file holds
        with self.transaction() as conn:
            for statement in _SCHEMA.strip().split(";"):
                if statement.strip():
                    conn.execute(statement)
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
            columns = {r["name"] for r in conn.execute("PRAGMA table_info(runs)")}
            if "supervisor_started" not in columns:  # added after the first release
                conn.execute("ALTER TABLE runs ADD COLUMN supervisor_started INTEGER")

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: writers queue instead of failing late).

        A failure of the database itself (disk full, read-only folder, damaged file) is
        raised as StateError."""
        with self._lock, self._explained():
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    @contextmanager
    def _explained(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            raise statedb.explain(exc, self.path, WHAT, DAMAGED_ADVICE) from None

    def _fetchall(self, sql: str, params: Any = ()) -> list[sqlite3.Row]:
        with self._lock, self._explained():
            return self._conn.execute(sql, params).fetchall()

    def _fetchone(self, sql: str, params: Any = ()) -> sqlite3.Row | None:
        with self._lock, self._explained():
            return self._conn.execute(sql, params).fetchone()

    # workspaces ------------------------------------------------------------------------------

    def get_workspace(self, subscription_id: str, resource_group: str, name: str
                      ) -> WorkspaceRow | None:
        """The workspace with this identity, or None."""
        row = self._fetchone(
            "SELECT * FROM workspaces WHERE subscription_id=? AND resource_group=? AND name=?",
            (subscription_id, resource_group, name),
        )
        return _workspace(row) if row else None

    def find_workspaces(self, name: str) -> list[WorkspaceRow]:
        """Workspaces with this name in any subscription/resource group."""
        rows = self._fetchall("SELECT * FROM workspaces WHERE name=?", (name,))
        return [_workspace(r) for r in rows]

    def create_workspace(self, subscription_id: str, resource_group: str, name: str,
                         location: str, tags: dict[str, str], owner: str | None,
                         built_in: dict[str, dict[str, dict[str, Any]]] | None = None
                         ) -> WorkspaceRow:
        """Insert a workspace (idempotent: an existing one is returned unchanged), with the
        objects every workspace comes with (`built_in`: kind -> name -> attrs, no owner) in the
        same transaction, so a crash never leaves a workspace without them."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT OR IGNORE INTO workspaces (subscription_id, resource_group, name, "
                "location, tags, owner, created_at) VALUES (?,?,?,?,?,?,?)",
                (subscription_id, resource_group, name, location, json.dumps(tags), owner, now),
            )
            (workspace_id,) = conn.execute(
                "SELECT id FROM workspaces WHERE subscription_id=? AND resource_group=? AND "
                "name=?", (subscription_id, resource_group, name)).fetchone()
            for kind, objects in (built_in or {}).items():
                for object_name, attrs in objects.items():
                    conn.execute(
                        "INSERT OR IGNORE INTO objects (workspace_id, kind, name, attrs, owner, "
                        "created_at, updated_at) VALUES (?,?,?,?,NULL,?,?)",
                        (workspace_id, kind, object_name, json.dumps(attrs, sort_keys=True),
                         now, now))
        found = self.get_workspace(subscription_id, resource_group, name)
        assert found is not None
        return found

    def update_workspace(self, workspace_id: int, tags: dict[str, str],
                         owner: str | None) -> None:
        """Replace a workspace's tags and owner."""
        with self.transaction() as conn:
            conn.execute("UPDATE workspaces SET tags=?, owner=? WHERE id=?",
                         (json.dumps(tags), owner, workspace_id))

    def delete_workspace(self, workspace_id: int) -> None:
        """Delete a workspace and every object in it."""
        with self.transaction() as conn:
            for table in ("objects", "pools", "allocations", "runs"):
                conn.execute(f"DELETE FROM {table} WHERE workspace_id=?", (workspace_id,))
            conn.execute("DELETE FROM workspaces WHERE id=?", (workspace_id,))

    # objects ---------------------------------------------------------------------------------

    def list_objects(self, workspace_id: int, kind: str | None = None) -> list[ObjectRow]:
        """Objects of one kind (or all) in a workspace, by name."""
        if kind is None:
            rows = self._fetchall(
                "SELECT kind, name, attrs, owner FROM objects WHERE workspace_id=? "
                "ORDER BY kind, name", (workspace_id,))
        else:
            rows = self._fetchall(
                "SELECT kind, name, attrs, owner FROM objects WHERE workspace_id=? AND kind=? "
                "ORDER BY name", (workspace_id, kind))
        return [ObjectRow(r["kind"], r["name"], json.loads(r["attrs"]), r["owner"]) for r in rows]

    def get_object(self, workspace_id: int, kind: str, name: str) -> ObjectRow | None:
        """One object, or None."""
        row = self._fetchone(
            "SELECT kind, name, attrs, owner FROM objects WHERE workspace_id=? AND kind=? "
            "AND name=?", (workspace_id, kind, name))
        if row is None:
            return None
        return ObjectRow(row["kind"], row["name"], json.loads(row["attrs"]), row["owner"])

    def put_object(self, workspace_id: int, kind: str, name: str, attrs: dict[str, Any],
                   owner: str | None) -> None:
        """Create or replace an object's attributes."""
        now = time.time()
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO objects (workspace_id, kind, name, attrs, owner, created_at, "
                "updated_at) VALUES (?,?,?,?,?,?,?) ON CONFLICT (workspace_id, kind, name) "
                "DO UPDATE SET attrs=excluded.attrs, owner=excluded.owner, "
                "updated_at=excluded.updated_at",
                (workspace_id, kind, name, json.dumps(attrs, sort_keys=True), owner, now, now),
            )

    def delete_object(self, workspace_id: int, kind: str, name: str) -> None:
        """Delete an object (no error if it is already gone)."""
        with self.transaction() as conn:
            conn.execute("DELETE FROM objects WHERE workspace_id=? AND kind=? AND name=?",
                         (workspace_id, kind, name))
            if kind == "compute":
                conn.execute("DELETE FROM pools WHERE workspace_id=? AND compute=?",
                             (workspace_id, name))

    # node pools ------------------------------------------------------------------------------

    def pool(self, workspace_id: int, compute: str) -> sqlite3.Row | None:
        """The node-pool counters of a compute (None before its first allocation)."""
        return self._fetchone(
            "SELECT * FROM pools WHERE workspace_id=? AND compute=?", (workspace_id, compute))

    # runs ------------------------------------------------------------------------------------

    def insert_run(self, row: RunRow, workspace_id: int) -> None:
        """Record a new run."""
        with self.transaction() as conn:
            conn.execute(
                "INSERT INTO runs (id, workspace_id, experiment, name, spec_hash, compute, "
                "status, error, created_at, started_at, ended_at, supervisor_pid, run_dir, "
                "owner, spec) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (row.id, workspace_id, row.experiment, row.name, row.spec_hash, row.compute,
                 row.status, row.error, row.created_at, row.started_at, row.ended_at,
                 row.supervisor_pid, row.run_dir, row.owner, json.dumps(row.spec)),
            )

    def get_run(self, run_id: str) -> RunRow | None:
        """A run by id."""
        row = self._fetchone("SELECT * FROM runs WHERE id=?", (run_id,))
        return _run(row) if row else None

    def list_runs(self, workspace_id: int, experiment: str | None = None,
                  spec_hash: str | None = None, name: str | None = None) -> list[RunRow]:
        """Runs of a workspace, newest first, optionally filtered."""
        query = "SELECT * FROM runs WHERE workspace_id=?"
        params: list[Any] = [workspace_id]
        for column, value in (("experiment", experiment), ("spec_hash", spec_hash),
                              ("name", name)):
            if value is not None:
                query += f" AND {column}=?"
                params.append(value)
        query += " ORDER BY created_at DESC, rowid DESC"
        return [_run(r) for r in self._fetchall(query, params)]

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set some columns of a run (status, error, started_at, ended_at, supervisor_pid)."""
        allowed = {"status", "error", "started_at", "ended_at", "supervisor_pid",
                   "supervisor_started"}
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not run columns: {sorted(unknown)}")
        assignments = ", ".join(f"{k}=?" for k in fields)
        with self.transaction() as conn:
            conn.execute(f"UPDATE runs SET {assignments} WHERE id=?", (*fields.values(), run_id))

    @property
    def connection(self) -> sqlite3.Connection:
        """The raw connection, for modules that keep their own tables (node pools)."""
        return self._conn


def _workspace(row: sqlite3.Row) -> WorkspaceRow:
    return WorkspaceRow(row["id"], row["subscription_id"], row["resource_group"], row["name"],
                        row["location"], json.loads(row["tags"]), row["owner"])


def _run(row: sqlite3.Row) -> RunRow:
    return RunRow(
        id=row["id"], experiment=row["experiment"], name=row["name"],
        spec_hash=row["spec_hash"], compute=row["compute"], status=row["status"],
        error=row["error"], created_at=row["created_at"], started_at=row["started_at"],
        ended_at=row["ended_at"], supervisor_pid=row["supervisor_pid"], run_dir=row["run_dir"],
        owner=row["owner"], spec=json.loads(row["spec"]),
        # absent from a file made before it, opened read-only (not migrated); a Row's `in`
        # looks at values, not keys
        supervisor_started=row["supervisor_started"]
        if "supervisor_started" in row.keys() else None,  # noqa: SIM118
    )
