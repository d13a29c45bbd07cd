"""One name for each process of a run, on every backend: `ps:0`, `worker:1`.

A task is ROLE:INDEX with ROLE `ps` (parameter server) or `worker`; MPI ranks and a
single-process run are workers (`worker:<rank>`, `worker:0`), as the local backend starts
them. Azure ML names log files instead; `role_of_log` maps them (docs/logs.md has the table):

- `std_log_ps_0`, `70_driver_log_worker_1`: the role and index in the name.
- `std_log_process_2`, `70_driver_log_2`: MPI / per-process logs, `worker:2`.
- `std_log`, `70_driver_log`: the one process of a single-process run, `worker:0`.
- anything else (`execution-wrapper`, `20_image_build_log`) keeps its file stem.

A `--role` selector is a role (`worker`: every worker), a task (`worker:1`) or, for the
service's other logs, a file stem.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from amlctl.errors import ProviderError

ROLES = ("ps", "worker")

# Azure ML streams a running job's output as one text, so one process cannot be picked out.
FOLLOW_ONE_ROLE = ("--role cannot be combined with --follow on Azure ML: the service streams "
                   "a running job's output as one log; drop --role, or read one process "
                   "without --follow")

_ROLE_AND_INDEX = re.compile(r"(?:^|_)(ps|worker)_(\d+)$")
_PROCESS = re.compile(r"^(?:std_log_process|70_driver_log)_(\d+)$")
_SINGLE = frozenset({"std_log", "70_driver_log"})
_PREFIX = re.compile(r"^\[([^\]\s]+)\] ")


def task_name(role: str, index: int) -> str:
    """The task's name in the shared vocabulary, e.g. `worker:1`."""
    return f"{role}:{index}"


def role_of_log(stem: str) -> str:
    """The task an Azure ML log file (its name without extension) belongs to; a log no
    process writes keeps its stem."""
    if m := _ROLE_AND_INDEX.search(stem):
        return task_name(m.group(1), int(m.group(2)))
    if m := _PROCESS.match(stem):
        return task_name("worker", int(m.group(1)))
    if stem in _SINGLE:
        return task_name("worker", 0)
    return stem


def selects(selector: str, name: str) -> bool:
    """Whether a `--role` selector picks the stream `name`: its task or its whole role."""
    return selector == name or (selector in ROLES and name.startswith(selector + ":"))


def prefixed_role(line: str) -> str | None:
    """The stream a `[worker:1] text` line came from; None for an unprefixed line."""
    m = _PREFIX.match(line)
    return m.group(1) if m else None


def choices(names: Iterable[str]) -> str:
    """What a `--role` could have been, for an error message: roles then streams."""
    found = list(dict.fromkeys(names))
    roles = [r for r in ROLES if any(selects(r, n) for n in found)]
    return ", ".join(roles + found)


def only_role(lines: Iterable[str], selector: str | None, run_id: str) -> Iterator[str]:
    """The `[task] text` lines of the streams `selector` picks (all lines when None). A
    selector that picks nothing is an error naming what there is, never an empty output."""
    if selector is None:
        yield from lines
        return
    matched, seen = False, []
    for line in lines:
        name = prefixed_role(line)
        if name is None:
            continue
        if selects(selector, name):
            matched = True
            yield line
        else:
            seen.append(name)
    if not matched:
        raise ProviderError(f"no process {selector!r} in the logs of run {run_id}; choose "
                            f"one of: {choices(seen) or '(no logs yet)'}")
