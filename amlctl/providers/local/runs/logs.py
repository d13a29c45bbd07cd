"""A local run's logs: one stream per task (`logs/<role>_<index>.log`), read or followed.

When more than one stream is shown, each line is prefixed with its task, `[worker:1] `, so
interleaved output stays readable. A role filter is a role (`worker`: all workers) or one task
(`worker:1`), in the vocabulary every backend shares (amlctl.providers.logroles). Following
reads what the tasks write as they write it, and stops once the run has ended and everything
it wrote has been shown.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from amlctl.providers.local.runs import status, topology
from amlctl.providers.local.runs.spec import RunSpec
from amlctl.providers.local.store import Store
from amlctl.providers.logroles import choices, selects
from amlctl.runs.errors import RunError

FOLLOW_POLL_SECONDS = 0.2


@dataclass(frozen=True)
class LogStream:
    """One task's log."""

    task: str  # worker:1
    path: Path


def streams(run_dir: Path, spec: RunSpec, role: str | None = None) -> list[LogStream]:
    """The run's log streams in task order (ps first), optionally filtered by `role`."""
    tasks = topology.layout(spec.distribution)
    chosen = [t for t in tasks if role is None or selects(role, t.name)]
    if not chosen:
        raise RunError(f"no task {role!r} in run {spec.run_id}; choose one of: "
                       + choices(t.name for t in tasks))
    return [LogStream(t.name, run_dir / "logs" / t.log_name) for t in chosen]


def run_logs(store: Store, run_id: str, role: str | None = None, follow: bool = False,
             poll_seconds: float = FOLLOW_POLL_SECONDS) -> Iterator[str]:
    """Lines (without newline) of a run's logs: each stream in turn, or, with `follow`, as
    they are written until the run ends."""
    row = store.get_run(run_id)
    if row is None:
        raise RunError(f"no run {run_id!r} in this workspace")
    run_dir = Path(row.run_dir)
    for folder in (run_dir, run_dir / "logs"):
        if not folder.is_dir():
            # Printing nothing would read as "the run printed nothing".
            raise RunError(f"run {run_id}: its folder {folder} is gone (removed outside "
                           "amlctl), so its logs cannot be shown")
    selected = streams(run_dir, RunSpec.from_dict(row.spec), role)
    tails = [_Tail(s, f"[{s.task}] " if len(selected) > 1 else "") for s in selected]
    if not follow:
        for tail in tails:
            yield from tail.read_new()
            yield from tail.rest()
        return
    while True:
        current = store.get_run(run_id)
        ended = current is None or current.status in status.TERMINAL
        for tail in tails:
            yield from tail.read_new()
        if ended:
            for tail in tails:
                yield from tail.rest()
            return
        time.sleep(poll_seconds)


@dataclass
class _Tail:
    """Reads a growing file a complete line at a time."""

    stream: LogStream
    prefix: str
    offset: int = 0
    partial: bytes = field(default=b"")

    def read_new(self) -> Iterator[str]:
        try:
            with self.stream.path.open("rb") as handle:
                handle.seek(self.offset)
                data = handle.read()
        except FileNotFoundError:
            return  # the task has not started yet
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            yield self.prefix + line.decode(errors="replace")

    def rest(self) -> Iterator[str]:
        """The last line when the file does not end with a newline."""
        if self.partial:
            yield self.prefix + self.partial.decode(errors="replace")
            self.partial = b""
