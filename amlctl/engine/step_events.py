"""The events of an apply's recovery and steps (see events.py, their public home: import
them from there).

They live apart from `PlanReady` so that an apply with nothing to do, which only ever tells
its view the plan, does not build these frozen classes on every start (each costs a few
compiled methods).
"""

from __future__ import annotations

from dataclasses import dataclass

from amlctl.engine.events import PlanReady
from amlctl.engine.plan import Action


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
