"""What an apply tells its view: typed, frozen events, and the view protocol that receives them.

The engine says what happened; a view (render/events.py for people, a test's recorder, a
program embedding amlctl) decides what to show. No UI string is built in the engine.

Order, per apply: recovery events (`StateNote`, `InterruptedSteps`, `Repaired`), then
`PlanReady`, then for each primitive step `StepStarted`, one `ActionDone` per primitive action
(a replace has two, an upload's create and sync two), and `StepFinished` or `StepFailed`.
Steps run in parallel on worker threads, so step events arrive from several threads at once:
a view that keeps state must guard it. A view's exception is not swallowed: raised on a
step's own event it fails that step, on `StepFailed` or a recovery or plan event it ends the
operation; the journal still records what the backend really did (executor._Runner._journal).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from amlctl.engine.plan import Plan

if TYPE_CHECKING:
    from amlctl.uploads.progress import SyncProgress


@dataclass(frozen=True)
class PlanReady:
    """The plan this operation will apply; `saved` when it re-checks a plan file."""

    plan: Plan
    saved: bool = False


# The recovery and step events are defined in step_events.py and loaded on first use (PEP 562):
# an apply with nothing to do only tells its view the plan. Import them from here as ever.
_STEP_EVENTS = frozenset({
    "StateNote", "InterruptedSteps", "Repaired", "StepStarted", "ActionDone", "Synced",
    "RunSubmitted", "RunsCanceled", "StepOutcome", "StepFinished", "StepFailed",
    "UploadWarning", "Event",
})

if TYPE_CHECKING:
    from amlctl.engine.step_events import (
        ActionDone,
        Event,
        InterruptedSteps,
        Repaired,
        RunsCanceled,
        RunSubmitted,
        StateNote,
        StepFailed,
        StepFinished,
        StepOutcome,
        StepStarted,
        Synced,
        UploadWarning,
    )


__all__ = [
    "ActionDone", "ApplyView", "Event", "InterruptedSteps", "NullView", "PlanReady", "Repaired",
    "RunSubmitted", "RunsCanceled", "StateNote", "StepFailed", "StepFinished", "StepOutcome",
    "StepStarted", "Synced", "UploadWarning",
]


def __getattr__(name: str) -> Any:
    if name in _STEP_EVENTS:
        from amlctl.engine import step_events

        value = globals()[name] = getattr(step_events, name)  # looked up here only once
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class ApplyView(Protocol):
    """Receives an apply's events (see the module doc for their order and threads)."""

    def event(self, event: Event) -> None:
        """One thing happened."""
        ...

    def upload_progress(self, address: str) -> SyncProgress | None:
        """Where an upload's per-file progress goes (None: nowhere)."""
        ...


class NullView:
    """Shows nothing: for programs and tests that only want the result."""

    def event(self, event: Event) -> None:
        """Ignore."""

    def upload_progress(self, address: str) -> SyncProgress | None:
        """No progress."""
        return None
