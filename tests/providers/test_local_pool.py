"""Local node pools: scale up for runs up to max_nodes, queue beyond, scale back to min_nodes
once idle_seconds_before_scaledown has passed (evaluated from timestamps, no daemon)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from amlctl.providers.local import pool
from amlctl.providers.local.store import Store, WorkspaceRow

IDLE = 600


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    s = Store(tmp_path / "state.db")
    yield s
    s.close()


@pytest.fixture
def ws(store: Store) -> WorkspaceRow:
    ws = store.create_workspace("sub", "rg", "ws-pool", "westeurope", {}, "test")
    store.put_object(ws.id, "compute", "cpu", {"min_nodes": 0, "max_nodes": 4,
                                               "idle_seconds_before_scaledown": IDLE}, "test")
    return ws


def nodes(store: Store, ws: WorkspaceRow, *, min_nodes: int = 0, later: float = 0.0,
          compute: str = "cpu") -> tuple[int, int, int]:
    """(current, running, idle) nodes, `later` seconds from now."""
    s = pool.status(store, ws.id, compute, min_nodes, IDLE, now=time.time() + later)
    assert s.current_node_count == s.node_state_counts["running"] + s.node_state_counts["idle"]
    assert s.allocation_state == "steady"
    return s.current_node_count, s.node_state_counts["running"], s.node_state_counts["idle"]


def test_a_new_cluster_holds_min_nodes(store: Store, ws: WorkspaceRow) -> None:
    assert nodes(store, ws) == (0, 0, 0)
    assert nodes(store, ws, min_nodes=2) == (2, 0, 2)


def test_scales_up_to_max_nodes_then_queues(store: Store, ws: WorkspaceRow) -> None:
    assert pool.acquire(store, ws.id, "cpu", "run-1", 2, max_nodes=4)
    assert nodes(store, ws) == (2, 2, 0)
    assert pool.acquire(store, ws.id, "cpu", "run-2", 2, max_nodes=4)
    assert nodes(store, ws) == (4, 4, 0)
    assert not pool.acquire(store, ws.id, "cpu", "run-3", 1, max_nodes=4)  # queued
    assert nodes(store, ws) == (4, 4, 0)
    pool.release(store, "run-1")
    assert pool.acquire(store, ws.id, "cpu", "run-3", 1, max_nodes=4)  # fits now
    assert nodes(store, ws) == (4, 3, 1)


def test_a_run_larger_than_the_cluster_never_fits(store: Store, ws: WorkspaceRow) -> None:
    assert not pool.acquire(store, ws.id, "cpu", "huge", 5, max_nodes=4)
    assert nodes(store, ws) == (0, 0, 0)


def test_acquire_is_idempotent_per_run(store: Store, ws: WorkspaceRow) -> None:
    assert pool.acquire(store, ws.id, "cpu", "run-1", 3, max_nodes=4)
    assert pool.acquire(store, ws.id, "cpu", "run-1", 3, max_nodes=4)  # e.g. after a restart
    assert nodes(store, ws) == (3, 3, 0)
    pool.release(store, "run-1")
    pool.release(store, "run-1")  # releasing twice is harmless too
    pool.release(store, "never-acquired")
    assert nodes(store, ws) == (3, 0, 3)


def test_released_nodes_stay_warm_until_the_idle_time_passed(store: Store, ws: WorkspaceRow
                                                             ) -> None:
    assert pool.acquire(store, ws.id, "cpu", "run-1", 3, max_nodes=4)
    pool.release(store, "run-1")
    assert nodes(store, ws) == (3, 0, 3)
    assert nodes(store, ws, later=IDLE - 5) == (3, 0, 3)
    assert nodes(store, ws, later=IDLE + 1) == (0, 0, 0)
    assert nodes(store, ws, min_nodes=1, later=IDLE + 1) == (1, 0, 1)


def test_scale_down_keeps_the_busy_nodes(store: Store, ws: WorkspaceRow) -> None:
    assert pool.acquire(store, ws.id, "cpu", "run-1", 1, max_nodes=4)
    assert pool.acquire(store, ws.id, "cpu", "run-2", 3, max_nodes=4)
    pool.release(store, "run-2")
    assert nodes(store, ws) == (4, 1, 3)
    assert nodes(store, ws, later=IDLE + 1) == (1, 1, 0)


def test_a_cluster_scaled_down_does_not_come_back_larger(store: Store, ws: WorkspaceRow
                                                         ) -> None:
    """After the idle nodes went away, a small run scales the cluster to its own size."""
    assert pool.acquire(store, ws.id, "cpu", "big", 4, max_nodes=4)
    pool.release(store, "big")
    with store.transaction() as conn:  # the release happened long ago
        conn.execute("UPDATE pools SET idle_since = idle_since - ?", (IDLE + 60,))
    assert nodes(store, ws) == (0, 0, 0)
    assert pool.acquire(store, ws.id, "cpu", "small", 1, max_nodes=4)
    assert nodes(store, ws) == (1, 1, 0)
    pool.release(store, "small")
    assert nodes(store, ws) == (1, 0, 1)  # one warm node, not the four of long ago


def test_clusters_are_independent(store: Store, ws: WorkspaceRow) -> None:
    store.put_object(ws.id, "compute", "gpu", {"min_nodes": 0, "max_nodes": 1,
                                               "idle_seconds_before_scaledown": IDLE}, "test")
    assert pool.acquire(store, ws.id, "cpu", "run-1", 4, max_nodes=4)
    assert pool.acquire(store, ws.id, "gpu", "run-2", 1, max_nodes=1)
    assert nodes(store, ws, compute="gpu") == (1, 1, 0)
    assert nodes(store, ws, compute="cpu") == (4, 4, 0)


def test_status_counts_busy_nodes_as_running(store: Store, ws: WorkspaceRow) -> None:
    assert pool.acquire(store, ws.id, "cpu", "run-1", 2, max_nodes=4)
    state = pool.status(store, ws.id, "cpu", 1, IDLE)
    assert (state.current_node_count, state.target_node_count) == (2, 2)
    assert state.allocation_state == "steady"
    assert state.node_state_counts == {"idle": 0, "running": 2, "preparing": 0,
                                       "leaving": 0, "preempted": 0, "unusable": 0}
