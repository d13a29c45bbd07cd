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
from typing import TYPE_CHECKING, Protocol

from amlctl.engine.plan import Action, Plan

if TYPE_CHECKING:
    from amlctl.uploads.progress import SyncProgress


@dataclass(frozen=True)
class StateNote:
    """Something the state store has to say before any change (e.g. a lease broken)."""

    text: str


@dataclass(frozen=True)
class InterruptedSteps:
    """A previous apply ended during these (address, step) actions; this one converges."""

    steps: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Repaired:
    """The backend repaired something an interrupted apply left (e.g. a half-submitted run)."""

    what: str


@dataclass(frozen=True)
class PlanReady:
    """The plan this operation will apply; `saved` when it re-checks a plan file."""

    plan: Plan
    saved: bool = False


@dataclass(frozen=True)
class StepStarted:
    """A resource's step begins (nothing journalled for it yet)."""

    address: str
    kind: str
    action: Action


@dataclass(frozen=True)
class ActionDone:
    """One primitive action (create, update, delete, sync, submit, cancel) of `address` is done
    in the backend and not yet journalled: the window a crash is hardest to recover from."""

    address: str
    step: str


@dataclass(frozen=True)
class Synced:
    """What an upload's sync sent and deleted."""

    files_sent: int
    bytes_sent: int
    files_deleted: int


@dataclass(frozen=True)
class RunSubmitted:
    """The run a submit step made (or found already made)."""

    run_id: str
    status: str


@dataclass(frozen=True)
class RunsCanceled:
    """The runs a run's delete step canceled."""

    run_ids: tuple[str, ...]


StepOutcome = Synced | RunSubmitted | RunsCanceled


@dataclass(frozen=True)
class StepFinished:
    """A resource's step succeeded and its new state is recorded."""

    address: str
    kind: str
    action: Action
    elapsed: float  # seconds
    outcome: StepOutcome | None = None


@dataclass(frozen=True)
class StepFailed:
    """A resource's step failed; steps that depend on it do not start."""

    address: str
    error: str


@dataclass(frozen=True)
class UploadWarning:
    """An upload went through with something the user should know (e.g. a skipped file)."""

    address: str
    message: str


Event = (StateNote | InterruptedSteps | Repaired | PlanReady | StepStarted | ActionDone
         | StepFinished | StepFailed | UploadWarning)


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
