"""Each task of a local run with its state and latest log line, for live views (`watch`).

What the supervisor records decides the state: `tasks.json` lists every started task and,
once it has exited while the run went on, its exit code. A task with no exit code when the
run has ended was stopped by the supervisor: a parameter server at the end of a completed run
(Completed, as Azure ML shows it), or any task of a failed or canceled run (Canceled).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from amlctl.providers.base import RoleStatus
from amlctl.providers.local.runs import status, topology
from amlctl.providers.local.runs.spec import RunSpec
from amlctl.providers.local.runs.supervisor import TASKS_FILE
from amlctl.providers.local.store import RunRow

_TAIL_BYTES = 8192

QUEUED, RUNNING = "Queued", "Running"
_NOT_LAUNCHED = frozenset({status.NOT_STARTED, status.QUEUED, status.PREPARING})


def role_states(row: RunRow) -> list[RoleStatus]:
    """Every task of the run, in task order (ps first), with its state and last log line."""
    run_dir = Path(row.run_dir)
    recorded = _recorded(run_dir)
    states = []
    for task in topology.layout(RunSpec.from_dict(row.spec).distribution):
        entry = recorded.get(task.name)
        code = entry.get("exit_code") if entry else None
        code = code if isinstance(code, int) else None
        states.append(RoleStatus(task.name, _state(row.status, entry is not None, code),
                                 last_line(run_dir / "logs" / task.log_name), code))
    return states


def _state(run_status: str, started: bool, code: int | None) -> str:
    if code is not None:
        return status.COMPLETED if code == 0 else status.FAILED
    if run_status in _NOT_LAUNCHED or (not started and run_status in status.ACTIVE):
        return QUEUED
    if run_status in status.ACTIVE:
        return RUNNING
    if not started:  # the run ended before its tasks started (environment, inputs, cancel)
        return run_status
    return status.COMPLETED if run_status == status.COMPLETED else status.CANCELED


def _recorded(run_dir: Path) -> dict[str, dict[str, Any]]:
    try:
        data = json.loads((run_dir / TASKS_FILE).read_text())
    except (OSError, ValueError):
        return {}
    tasks = data.get("tasks") if isinstance(data, dict) else None
    return {f"{t.get('role')}:{t.get('index')}": t for t in tasks or []
            if isinstance(t, dict)}


def last_line(path: Path) -> str | None:
    """The last non-empty line of a log (reads only its end), None when it has none."""
    try:
        with path.open("rb") as stream:
            size = stream.seek(0, 2)
            stream.seek(max(0, size - _TAIL_BYTES))
            data = stream.read()
    except OSError:
        return None
    for raw in reversed(data.splitlines()):
        text = raw.decode(errors="replace").strip()
        if text:
            return text
    return None
