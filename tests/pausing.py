"""The real `amlctl` command line, paused at an apply event so a test can kill it there.

    python tests/pausing.py in-step N ARGS...     # once the Nth primitive action is done in
                                                   # the backend, before it is journalled
    python tests/pausing.py after-step N ARGS...  # once the Nth step has finished

It runs `amlctl ARGS...` through its own entry point, with the command line's own view
(`amlctl.cli.apply_view.make_view`) wrapped in a `PausingView`: the pause goes through the
engine's event seam, so nothing in amlctl knows about tests. The paused thread prints
"ADDRESS: paused in STEP" (or "ADDRESS: paused after its step") and blocks until the process
is killed; so does every later one (parallel steps pause too).
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from amlctl.engine.events import ActionDone, ApplyView, Event, StepFinished

WHERE = {"in-step": ActionDone, "after-step": StepFinished}


class PausingView:
    """Wraps a view: shows every event through it, then blocks the thread that brings the
    Nth event of one type (ActionDone for "in-step", StepFinished for "after-step"), and
    each one after."""

    def __init__(self, inner: ApplyView, where: str, n: int) -> None:
        self.inner = inner
        self.kind = WHERE[where]
        self.n = n
        self.seen = 0
        self._lock = threading.Lock()

    def event(self, event: Event) -> None:
        """Show the event, then pause if it is the Nth of its type or later."""
        self.inner.event(event)
        if not isinstance(event, self.kind):
            return
        with self._lock:
            self.seen += 1
            pause = self.seen >= self.n
        if pause:
            where = (f"in {event.step}" if isinstance(event, ActionDone)
                     else "after its step")
            print(f"{event.address}: paused {where}", flush=True)
            threading.Event().wait()  # until the test kills the process

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # upload_progress, the confirmations


class RecordingView:
    """Keeps every event, in the order they came (from any thread); shows nothing."""

    def __init__(self, events: list[Event] | None = None) -> None:
        self.events: list[Event] = [] if events is None else events
        self._lock = threading.Lock()

    def event(self, event: Event) -> None:
        """Keep it."""
        with self._lock:
            self.events.append(event)

    def upload_progress(self, address: str) -> None:
        """No progress."""
        return None


def main(argv: list[str]) -> None:
    """`pausing.py WHERE N ARGS...`: amlctl ARGS with its view pausing at WHERE, N."""
    where, n, *args = argv
    from amlctl.cli import apply_view
    from amlctl.cli import main as amlctl_main

    made = apply_view.make_view
    apply_view.make_view = lambda style: PausingView(made(style), where, int(n))
    amlctl_main(args)


if __name__ == "__main__":
    main(sys.argv[1:])
