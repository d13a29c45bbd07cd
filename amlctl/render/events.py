"""An apply's events as the lines people read: "compute.cpu: Creating...", "done after 1.2s"."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

# Only PlanReady is needed up front; the step events are loaded when one happens (events.py).
from amlctl.engine import events
from amlctl.engine.events import PlanReady
from amlctl.engine.plan import Action
from amlctl.render.human import Style, plain, render_plan
from amlctl.render.values import human_bytes

if TYPE_CHECKING:
    from amlctl.engine.events import Event, StepOutcome
    from amlctl.uploads.progress import SyncProgress

VERBS = {Action.CREATE: "Creating", Action.UPDATE: "Updating", Action.REPLACE: "Replacing",
         Action.DELETE: "Destroying"}


def event_line(event: Event) -> str | None:
    """The line shown for an event; None for events people are not shown (an action done
    inside a step, a plan: render_plan shows that)."""
    if isinstance(event, events.StepStarted):
        verb = VERBS[event.action]
        if event.kind == "run":
            verb = "Canceling" if event.action is Action.DELETE else "Submitting"
        return f"{event.address}: {verb}..."
    if isinstance(event, events.StepFinished):
        return f"{event.address}: done after {event.elapsed:.1f}s{outcome_text(event.outcome)}"
    if isinstance(event, events.StepFailed):
        return f"{event.address}: failed: {event.error}"
    if isinstance(event, events.UploadWarning):
        return f"{event.address}: warning: {event.message}"
    if isinstance(event, events.StateNote):
        return event.text
    if isinstance(event, events.InterruptedSteps):
        steps = ", ".join(f"{step} {address}" for address, step in event.steps)
        return f"A previous apply was interrupted during: {steps}. Converging from live state."
    if isinstance(event, events.Repaired):
        return f"Recovered: {event.what}"
    return None


def outcome_text(outcome: StepOutcome | None) -> str:
    """What a finished step did, as a parenthesised suffix ("" when there is nothing to say)."""
    if isinstance(outcome, events.Synced):
        return (f" ({outcome.files_sent} files, {human_bytes(outcome.bytes_sent)} sent, "
                f"{outcome.files_deleted} deleted)")
    if isinstance(outcome, events.RunSubmitted):
        return f" (run {outcome.run_id}, {outcome.status})"
    if isinstance(outcome, events.RunsCanceled):
        return f" (canceled {', '.join(outcome.run_ids)})"
    return ""


class TextView:
    """Writes each event's line, and the plan (unless it comes from a plan file, already
    reviewed), through `write`. Lines from parallel steps are written whole, one at a time."""

    def __init__(self, write: Callable[[str], None], style: Style = plain,
                 progress: Callable[[str], SyncProgress] | None = None) -> None:
        self.write = write
        self.style = style
        self.progress = progress
        self._lock = threading.Lock()

    def event(self, event: Event) -> None:
        """Show one event."""
        if isinstance(event, PlanReady):
            text = "" if event.saved else render_plan(event.plan, self.style)
        else:
            line = event_line(event)
            text = "" if line is None else line + "\n"
        if text:
            with self._lock:
                self.write(text)

    def upload_progress(self, address: str) -> SyncProgress | None:
        """The upload's progress view, when one was given."""
        return self.progress(address) if self.progress is not None else None
