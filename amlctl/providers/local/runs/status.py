"""Run statuses, exactly as Azure ML names them, and compare-and-set transitions between them.

Several processes write one run's status (the supervisor, `cancel`, recovery), so every change
is conditional on the status it starts from: a run that reached a terminal status never leaves
it, and a cancel request is never overwritten by the supervisor's next step.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from amlctl.providers.local.runs import procs
from amlctl.providers.local.store import Store

NOT_STARTED = "NotStarted"
QUEUED = "Queued"
PREPARING = "Preparing"
RUNNING = "Running"
CANCELING = "Canceling"  # transient: a cancel was asked for, the supervisor is stopping tasks
COMPLETED = "Completed"
FAILED = "Failed"
CANCELED = "Canceled"

TERMINAL = frozenset({COMPLETED, FAILED, CANCELED})
ACTIVE = frozenset({NOT_STARTED, QUEUED, PREPARING, RUNNING, CANCELING})

_COLUMNS = frozenset({"error", "started_at", "ended_at", "supervisor_pid"})
# Statuses only a live supervisor can hold: without one, the run is dead (see submit.reconcile).
SUPERVISED = frozenset({PREPARING, RUNNING, CANCELING})


def transition(store: Store, run_id: str, to: str, allowed_from: Iterable[str],
               **fields: Any) -> bool:
    """Set the run's status to `to` (and `fields`) only if it is now one of `allowed_from`.

    Returns whether the change was made. One write transaction, so it cannot interleave with
    another writer's check.
    """
    unknown = set(fields) - _COLUMNS
    if unknown:
        raise ValueError(f"not run columns: {sorted(unknown)}")
    sources = sorted(set(allowed_from))
    assignments = "".join(f", {name}=?" for name in fields)
    marks = ",".join("?" * len(sources))
    with store.transaction() as conn:
        cursor = conn.execute(
            f"UPDATE runs SET status=?{assignments} WHERE id=? AND status IN ({marks})",
            (to, *fields.values(), run_id, *sources),
        )
        return cursor.rowcount == 1


def current(store: Store, run_id: str) -> str | None:
    """The run's status now, or None if there is no such run."""
    row = store.get_run(run_id)
    return row.status if row else None


def supervisor_alive(pid: int | None, run_id: str, marker: str,
                     started: int | None = None) -> bool:
    """Whether `pid` is a live supervisor of this run (not a zombie, not a recycled pid).

    `started` (the start time recorded by `claim`) pins the very process: a pid reused by
    another process, even one with the same command line, has another start time.
    """
    if not procs.alive(pid, marker, run_id):
        return False
    now = procs.start_time(pid)
    return started is None or now is None or now == started


def claim(store: Store, run_id: str, pid: int, marker: str) -> bool:
    """Record `pid` as the run's supervisor unless another live supervisor holds it.

    Two supervisors of one run (a recovery racing a slow start) would release each other's
    nodes; the loser of this check exits without touching the run.
    """
    with store.transaction() as conn:
        row = conn.execute("SELECT supervisor_pid, supervisor_started FROM runs WHERE id=?",
                           (run_id,)).fetchone()
        if row is None:
            return False
        holder = row["supervisor_pid"]
        if holder and holder != pid and supervisor_alive(holder, run_id, marker,
                                                         row["supervisor_started"]):
            return False
        conn.execute("UPDATE runs SET supervisor_pid=?, supervisor_started=? WHERE id=?",
                     (pid, procs.start_time(pid), run_id))
        return True
