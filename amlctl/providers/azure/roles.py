"""The processes of an Azure ML run for live views (`amlctl watch`), on either SDK.

A run declares its processes (a TensorFlow job's parameter servers and workers, an MPI job's
ranks, else one per node) and each process writes its own log file, named as in
`amlctl.providers.logroles`. Azure ML reports one state per run, none per process, so a
process's state is derived from its run's and from whether its log exists (`role_state`).
The SDK-specific parts (reading the run's definition and its log files) stay in each backend.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath
from typing import TypeVar

from amlctl.providers.base import TERMINAL_RUN_STATES, RoleStatus
from amlctl.providers.logroles import ROLES, role_of_log, task_name

# what the common runtime writes per process (the SDK's JobLogPattern); older runtimes' logs
# under azureml-logs/ are read when there is none of these
USER_LOG = re.compile(r"user_logs/std_log.*\.txt")
# statuses in which the service has started no process yet: nothing to read
NOT_STARTED = frozenset({"NotStarted", "Queued", "Preparing"})

T = TypeVar("T")


def role_of(log_name: str) -> str:
    """The role a log file belongs to (`user_logs/std_log_worker_0.txt` -> `worker:0`), named
    as on the other backends; other files keep their stem."""
    return role_of_log(PurePosixPath(log_name).stem)


def process_logs(files: Mapping[str, T]) -> dict[str, T]:
    """The run's log files (name -> anything) worth reading, by name: the common runtime's
    per-process logs when there are any, else every file (older runtimes)."""
    user = {n: v for n, v in files.items() if USER_LOG.fullmatch(n)}
    return dict(sorted((user or dict(files)).items()))


def declared(parameter_servers: int, workers: int) -> list[str]:
    """The tasks a run declares, parameter servers first: `ps:0`, ..., `worker:0`, ..."""
    return ([task_name("ps", i) for i in range(parameter_servers)]
            + [task_name("worker", i) for i in range(max(workers, 1))])


def is_task(name: str) -> bool:
    """Whether `name` is a process (`worker:1`) rather than another log's stem."""
    role, _, index = name.partition(":")
    return role in ROLES and index.isdigit()


def _task_order(name: str) -> tuple[int, int]:
    role, _, index = name.partition(":")
    return ROLES.index(role), int(index)


def last_line(text: str) -> str | None:
    """The last non-blank line of a log, stripped; None for an empty log."""
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), None)


def log_tails(files: Mapping[str, T], read: Callable[[str, T], str]) -> dict[str, str | None]:
    """The last line of each process's log, by task: `files` maps the run's log names to what
    `read(name, value)` needs to fetch a log's text (a SAS URL)."""
    tails: dict[str, str | None] = {}
    for name, ref in process_logs(files).items():
        role = role_of(name)
        if is_task(role):
            tails[role] = last_line(read(name, ref))
    return tails


def role_state(run_status: str, has_log: bool) -> str:
    """A process's state from its run's (per-process states are not reported by Azure ML):
    queued until the run runs and the process has written a log, then running, then the
    run's final state."""
    if run_status in TERMINAL_RUN_STATES:
        return run_status
    return "Running" if run_status == "Running" and has_log else "Queued"


def role_statuses(run_status: str, tasks: list[str],
                  tails: Mapping[str, str | None]) -> list[RoleStatus]:
    """Each process of a run: the declared `tasks` and any other that has a log (`tails`:
    task -> last line of its log), in task order, with its derived state."""
    names = sorted(set(tasks) | {n for n in tails if is_task(n)}, key=_task_order)
    return [RoleStatus(n, role_state(run_status, n in tails), tails.get(n)) for n in names]
