"""Node pools: how a local AmlCompute cluster scales, evaluated from timestamps (no daemon).

A cluster holds `max(min_nodes, warm)` nodes. Runs take nodes (`acquire`), up to max_nodes; a
run that does not fit stays queued. Released nodes stay warm (idle) until
idle_seconds_before_scaledown has passed since the cluster last became less busy, then the
cluster is back to min_nodes, as AmlCompute does.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from amlctl.providers.local.store import Store

DEFAULT_IDLE_SECONDS = 1800


@dataclass(frozen=True)
class PoolStatus:
    """A cluster's nodes at one moment (the provider turns it into a ComputeStatus)."""

    current_node_count: int
    target_node_count: int
    busy_nodes: int
    allocation_state: str  # steady | resizing
    node_state_counts: dict[str, int]


def status(store: Store, workspace_id: int, compute: str, min_nodes: int,
           idle_seconds: int, now: float | None = None) -> PoolStatus:
    """The cluster's nodes at `now`."""
    now = time.time() if now is None else now
    row = store.pool(workspace_id, compute)
    busy = row["busy_nodes"] if row else 0
    warm = row["warm_nodes"] if row else 0
    idle_since = row["idle_since"] if row else None
    if busy < warm and idle_since is not None and now - idle_since >= idle_seconds:
        warm = busy  # the idle nodes have been released
    current = max(min_nodes, warm, busy)
    counts = {"idle": current - busy, "running": busy, "preparing": 0, "leaving": 0,
              "preempted": 0, "unusable": 0}
    return PoolStatus(current, current, busy, "steady", counts)


def acquire(store: Store, workspace_id: int, compute: str, run_id: str, nodes: int,
            max_nodes: int) -> bool:
    """Give `nodes` nodes to a run if the cluster can scale to them; False means queued.

    Idempotent: a run that already holds its nodes gets True again.
    """
    with store.transaction() as conn:
        held = conn.execute("SELECT nodes FROM allocations WHERE run_id=?", (run_id,)).fetchone()
        if held:
            return True
        busy = conn.execute(
            "SELECT COALESCE(SUM(nodes), 0) FROM allocations WHERE workspace_id=? AND compute=?",
            (workspace_id, compute)).fetchone()[0]
        if busy + nodes > max_nodes:
            return False
        now = time.time()
        row = conn.execute("SELECT warm_nodes, idle_since FROM pools WHERE workspace_id=? AND "
                           "compute=?", (workspace_id, compute)).fetchone()
        warm = row["warm_nodes"] if row else 0
        if row and row["idle_since"] is not None and busy < warm and \
                now - row["idle_since"] >= _idle_seconds(conn, workspace_id, compute):
            warm = busy  # the idle nodes were released meanwhile: do not count them again
        conn.execute("INSERT INTO allocations VALUES (?,?,?,?,?)",
                     (run_id, workspace_id, compute, nodes, now))
        conn.execute(
            "INSERT INTO pools (workspace_id, compute, busy_nodes, warm_nodes, idle_since) "
            "VALUES (?,?,?,?,NULL) ON CONFLICT (workspace_id, compute) DO UPDATE SET "
            "busy_nodes=excluded.busy_nodes, warm_nodes=excluded.warm_nodes",
            (workspace_id, compute, busy + nodes, max(warm, busy + nodes)))
        return True


def _idle_seconds(conn: sqlite3.Connection, workspace_id: int, compute: str) -> float:
    """The compute's idle_seconds_before_scaledown (AmlCompute's default when unknown)."""
    row = conn.execute("SELECT json_extract(attrs, '$.idle_seconds_before_scaledown') FROM "
                       "objects WHERE workspace_id=? AND kind='compute' AND name=?",
                       (workspace_id, compute)).fetchone()
    return float(row[0]) if row and row[0] is not None else DEFAULT_IDLE_SECONDS


def release(store: Store, run_id: str) -> None:
    """Return a run's nodes to its cluster; they stay warm until the idle time passes."""
    with store.transaction() as conn:
        held = conn.execute("SELECT workspace_id, compute FROM allocations WHERE run_id=?",
                            (run_id,)).fetchone()
        if not held:
            return
        conn.execute("DELETE FROM allocations WHERE run_id=?", (run_id,))
        busy = conn.execute(
            "SELECT COALESCE(SUM(nodes), 0) FROM allocations WHERE workspace_id=? AND compute=?",
            (held["workspace_id"], held["compute"])).fetchone()[0]
        conn.execute("UPDATE pools SET busy_nodes=?, idle_since=? WHERE workspace_id=? AND "
                     "compute=?", (busy, time.time(), held["workspace_id"], held["compute"]))
