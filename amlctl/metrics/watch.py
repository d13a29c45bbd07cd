"""A live view of one run: each role's state and last line, elapsed time, each metric's
latest value and sparkline, until the run ends.

On a terminal the view is redrawn in place (ANSI cursor movement, nothing else); elsewhere
(CI logs, pipes) it prints a plain line whenever a state changes and every `heartbeat`
seconds. Watching never changes the run: stopping the watcher (Ctrl-C) leaves it running.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from amlctl.metrics.charts import fmt, printable, sparkline
from amlctl.providers.base import MetricSeries, Provider, RoleStatus, RunInfo

CURSOR_UP_AND_CLEAR = "\x1b[{lines}F\x1b[J"  # to the start of the frame, clear to the end
LINE_WIDTH = 100
SPARK_WIDTH = 20


@dataclass(frozen=True)
class Snapshot:
    """What the view shows at one moment."""

    run: RunInfo
    roles: list[RoleStatus]
    metrics: list[MetricSeries]

    def states(self) -> tuple[str, ...]:
        """The run's status and each role's state: what a plain line is printed for."""
        return (self.run.status, *(f"{r.name}={r.state}" for r in self.roles))


def snapshot(provider: Provider, run_id: str) -> Snapshot:
    """Read the run, its roles and its metrics now."""
    run = provider.get_run(run_id)
    if run is None:
        from amlctl.errors import UsageError

        raise UsageError(f"run {run_id!r} no longer exists")
    return Snapshot(run, provider.run_roles(run_id), provider.run_metrics(run_id))


def elapsed(run: RunInfo, now: float) -> str:
    """H:MM:SS since the run started (or was submitted), up to its end."""
    start = run.started_at or run.created_at
    seconds = max(0, int((run.ended_at or now) - start))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def frame(snap: Snapshot, now: float, width: int = LINE_WIDTH,
          height: int | None = None) -> list[str]:
    """The view as lines, none longer than `width`, at most `height` of them (a frame taller
    than the terminal could not be redrawn in place)."""
    run = snap.run
    lines = [f"Run {run.id} ({run.name})  {run.status}  elapsed {elapsed(run, now)}"]
    name_width = max([4, *(len(r.name) for r in snap.roles)])
    for role in snap.roles:
        line = printable(role.last_line or "")
        lines.append(f"  {role.name:<{name_width}}  {role.state:<9}  {line}")
    if snap.metrics:
        key_width = max(len(printable(s.name)) for s in snap.metrics)
        lines.append("Metrics:")
        for s in snap.metrics:
            lines.append(f"  {printable(s.name):<{key_width}}  {fmt(s.last):>9}  "
                         f"step {s.steps[-1]:<6}  {sparkline(s.values, SPARK_WIDTH)}")
    if run.error and not run.active:
        lines.append(f"Error: {printable(run.error.splitlines()[0])}")
    if height is not None and len(lines) > height:
        kept = max(1, height - 1)
        lines = [*lines[:kept], f"  ... {len(lines) - kept} more lines (make the terminal "
                                "taller to see them)"]
    return [_clip(line.rstrip(), width) for line in lines]


def plain_line(snap: Snapshot, now: float) -> str:
    """One line for a log: time, run status, elapsed, role states, latest metrics."""
    roles = ", ".join(f"{r.name} {r.state}" for r in snap.roles)
    metrics = " ".join(f"{printable(s.name)}={fmt(s.last)}" for s in snap.metrics)
    stamp = time.strftime("%H:%M:%S", time.localtime(now))
    return "  ".join(part for part in (
        stamp, f"{snap.run.status} {elapsed(snap.run, now)}", roles, metrics) if part)


def watch(provider: Provider, run_id: str, write: Callable[[str], None], *, tty: bool,
          interval: float = 1.0, heartbeat: float = 30.0, width: int = LINE_WIDTH,
          height: int | None = None, clock: Callable[[], float] = time.time,
          sleep: Callable[[float], None] = time.sleep) -> RunInfo:
    """Show the run until it ends; return its final state.

    `write` receives the text to output, exactly as it must appear. `interval` is the time
    between reads; `heartbeat` bounds the time between two plain lines when nothing changes;
    `width` and `height` are the terminal's.
    """
    drawn = 0
    last_states: tuple[str, ...] = ()
    last_line_at = float("-inf")
    while True:
        snap = snapshot(provider, run_id)
        now = clock()
        if tty:
            lines = frame(snap, now, width, height)
            prefix = CURSOR_UP_AND_CLEAR.format(lines=drawn) if drawn else ""
            write(prefix + "\n".join(lines) + "\n")
            drawn = len(lines)
        elif snap.states() != last_states or now - last_line_at >= heartbeat \
                or not snap.run.active:
            write(plain_line(snap, now) + "\n")
            last_states, last_line_at = snap.states(), now
        if not snap.run.active:
            return snap.run
        sleep(interval)
