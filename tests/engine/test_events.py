"""The apply operation and the events its view receives, over the basic manifest and the real
local backend: what a view is told and in which order, that a view raising or pausing cannot
make the journal say anything but what the backend did, and when the operation asks to
confirm."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from enginekit import journal, state_rows, wait_for
from pausing import RecordingView

from amlctl.engine.events import (
    ActionDone,
    Event,
    InterruptedSteps,
    PlanReady,
    Repaired,
    RunsCanceled,
    RunSubmitted,
    StateNote,
    StepFailed,
    StepFinished,
    StepStarted,
    Synced,
    UploadWarning,
)
from amlctl.engine.executor import apply_plan
from amlctl.engine.lock import read_lock
from amlctl.engine.operation import ApplyRequest, run_apply
from amlctl.engine.plan import Action, Plan
from amlctl.engine.planfile import load_plan, save_plan
from amlctl.engine.planner import Context, make_plan, open_context
from amlctl.errors import PlanError, UsageError
from amlctl.manifest.loader import load_manifest
from amlctl.render.events import TextView, event_line

# what each resource of the basic manifest does on a first apply, in journal steps
FIRST_APPLY = {"workspace": ["create"], "compute.cpu": ["create"], "compute.gpu": ["create"],
               "datastore.images": ["create"], "experiment.train": ["create"],
               "upload.digits": ["create", "sync"]}


class AskingView(RecordingView):
    """Records events and what it was asked; refuses when told to."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.asked: list[tuple[str, Plan]] = []

    def confirm_actions(self, plan: Plan) -> None:
        self.asked.append(("actions", plan))
        if self.refuse:
            raise UsageError("perform these actions canceled")

    def confirm_runs(self, plan: Plan) -> None:
        self.asked.append(("runs", plan))


class RaisingView(RecordingView):
    """Raises on the first event of one type for one address."""

    def __init__(self, kind: type, address: str) -> None:
        super().__init__()
        self.kind = kind
        self.address = address

    def event(self, event: Event) -> None:
        super().event(event)
        if isinstance(event, self.kind) and getattr(event, "address", None) == self.address:
            raise RuntimeError(f"the view broke on {type(event).__name__}")


def open_basic(folder: Path) -> Context:
    return open_context(load_manifest(folder / "amlctl.yaml"))


@pytest.fixture
def context(basic_project: Path) -> Iterator[Context]:
    ctx = open_basic(basic_project)
    yield ctx
    ctx.close()


def of_type(events: list[Event], kind: type) -> list[Event]:
    return [e for e in events if isinstance(e, kind)]


def test_a_first_apply_tells_the_view_each_step_in_order(basic_project: Path,
                                                         context: Context) -> None:
    view = AskingView()
    outcome = run_apply(context, ApplyRequest(auto_approve=True), view)
    events = view.events
    assert outcome.result is not None and outcome.result.ok
    assert view.asked == []  # --auto-approve: nothing asked

    # a fresh stack has nothing to recover: the plan comes first
    assert isinstance(events[0], PlanReady) and events[0].plan is outcome.plan
    assert not events[0].saved
    assert {c.address: c.action for c in outcome.plan.actionable} == dict.fromkeys(
        FIRST_APPLY, Action.CREATE)

    # per resource: started, its primitive actions, finished; never failed
    assert of_type(events, StepFailed) == []
    for address, steps in FIRST_APPLY.items():
        mine = [e for e in events if getattr(e, "address", None) == address]
        assert [type(e) for e in mine] == [StepStarted, *[ActionDone] * len(steps),
                                           StepFinished], mine
        started, *done, finished = mine
        assert (started.kind, started.action) == (address.partition(".")[0], Action.CREATE)
        assert [e.step for e in done] == steps
        assert (finished.kind, finished.action) == (started.kind, started.action)
        assert finished.elapsed >= 0

    # everything depends on the workspace: it finishes before any other step starts
    workspace_done = events.index(next(e for e in of_type(events, StepFinished)
                                       if e.address == "workspace"))
    assert all(events.index(e) > workspace_done for e in of_type(events, StepStarted)
               if e.address != "workspace")

    # what the upload sent, from the files on disk; the other steps have no outcome
    data = sorted((basic_project / "data").iterdir())
    outcomes = {e.address: e.outcome for e in of_type(events, StepFinished)}
    assert outcomes.pop("upload.digits") == Synced(len(data), sum(p.stat().st_size
                                                                  for p in data), 0)
    assert set(outcomes.values()) == {None}

    # each action the view heard of is journalled done, and nothing else is
    told = [(e.address, e.step) for e in of_type(events, ActionDone)]
    assert sorted(told) == sorted(journal(basic_project, "done"))
    assert journal(basic_project, "begun") == []

    # events are values: a view cannot change what another view sees
    with pytest.raises(dataclasses.FrozenInstanceError):
        events[1].address = "compute.other"  # type: ignore[union-attr]

    # again: the plan, and nothing to do
    again = AskingView()
    nothing = run_apply(context, ApplyRequest(), again)
    assert nothing.result is None and not nothing.plan.has_changes
    assert [type(e) for e in again.events] == [PlanReady] and again.asked == []


@pytest.mark.parametrize("kind", [StepStarted, ActionDone, StepFinished])
def test_a_raising_view_fails_the_step_but_the_journal_stays_true(
        basic_project: Path, context: Context, kind: type) -> None:
    view = RaisingView(kind, "compute.cpu")
    result = apply_plan(context, make_plan(context), view)
    assert "the view broke on" in result.failed["compute.cpu"]
    assert set(result.done) == set(FIRST_APPLY) - {"compute.cpu"}
    assert journal(basic_project, "begun") == []  # nothing left half-written
    created = ("compute.cpu", "create") in journal(basic_project, "done")
    live = "cpu" in {name for kind_, name, _, _ in state_rows(basic_project)
                     if kind_ == "compute"}
    # started: nothing done, nothing journalled; later: done in the backend and journalled so
    assert created == live == (kind is not StepStarted)
    assert journal(basic_project, "failed") == []  # the backend did not fail

    # the next apply has nothing interrupted to report and converges
    after = RecordingView()
    assert apply_plan(context, make_plan(context), after).ok
    assert of_type(after.events, InterruptedSteps) == []
    assert not make_plan(context).has_changes


def test_a_paused_view_holds_the_action_done_but_unjournalled(basic_project: Path,
                                                              context: Context) -> None:
    """The window the crash tests kill in: while the view holds ActionDone, the backend has
    the object and the journal says only that it was begun; released, the apply ends clean."""
    release = threading.Event()
    paused = threading.Event()

    class Pausing(RecordingView):
        def event(self, event: Event) -> None:
            super().event(event)
            if isinstance(event, ActionDone) and event.address == "compute.gpu":
                paused.set()
                release.wait(30)

    view = Pausing()
    results = []
    worker = threading.Thread(target=lambda: results.append(
        apply_plan(context, make_plan(context), view)))
    worker.start()
    try:
        wait_for(paused.is_set, what="the pause")
        assert ("compute.gpu", "create") in journal(basic_project, "begun")
        assert ("compute.gpu", "create") not in journal(basic_project, "done")
        assert "gpu" in {name for kind, name, _, _ in state_rows(basic_project)
                         if kind == "compute"}
        assert not any(isinstance(e, StepFinished) and e.address == "compute.gpu"
                       for e in list(view.events))
    finally:
        release.set()
        worker.join(60)
    assert results and results[0].ok
    assert journal(basic_project, "begun") == []
    assert ("compute.gpu", "create") in journal(basic_project, "done")


def test_a_refused_confirmation_changes_nothing(basic_project: Path,
                                                context: Context) -> None:
    view = AskingView(refuse=True)
    with pytest.raises(UsageError, match="canceled"):
        run_apply(context, ApplyRequest(), view)
    assert [what for what, _ in view.asked] == ["actions"]
    assert not of_type(view.events, StepStarted)
    assert journal(basic_project, "begun") + journal(basic_project, "done") == []
    assert [row for row in state_rows(basic_project) if row[0] != "workspace"] == []
    assert read_lock(basic_project / ".amlctl") is None  # released on the way out


def test_a_saved_plan_is_applied_without_asking_and_only_while_current(
        basic_project: Path, context: Context) -> None:
    path = basic_project / "saved.plan"
    save_plan(make_plan(context), path, targets=[], replace=[])
    view = AskingView(refuse=True)  # would refuse, were it asked
    outcome = run_apply(context, ApplyRequest(saved=load_plan(path)), view)
    assert outcome.result is not None and outcome.result.ok and view.asked == []
    assert [e.saved for e in of_type(view.events, PlanReady)] == [True]

    # the live state moved on since that plan: refused before anything is done
    stale = AskingView()
    with pytest.raises(PlanError, match="the saved plan is stale"):
        run_apply(context, ApplyRequest(saved=load_plan(path)), stale)
    assert not of_type(stale.events, StepStarted) and stale.asked == []


@pytest.mark.parametrize("event, line", [
    (StepStarted("compute.cpu", "compute", Action.REPLACE), "compute.cpu: Replacing..."),
    (StepStarted("run.r", "run", Action.CREATE), "run.r: Submitting..."),
    (StepStarted("run.r", "run", Action.DELETE), "run.r: Canceling..."),
    (StepFinished("upload.u", "upload", Action.UPDATE, 1.26, Synced(2, 1536, 1)),
     "upload.u: done after 1.3s (2 files, 1.5 KiB sent, 1 deleted)"),
    (StepFinished("run.r", "run", Action.CREATE, 0.0, RunSubmitted("r_1", "Queued")),
     "run.r: done after 0.0s (run r_1, Queued)"),
    (StepFinished("run.r", "run", Action.DELETE, 2.0, RunsCanceled(("r_1", "r_2"))),
     "run.r: done after 2.0s (canceled r_1, r_2)"),
    (StepFailed("datastore.d", "ProviderError: no"), "datastore.d: failed: ProviderError: no"),
    (UploadWarning("upload.u", "skipped a fifo"), "upload.u: warning: skipped a fifo"),
    (InterruptedSteps((("compute.c", "delete"), ("upload.u", "sync"))),
     "A previous apply was interrupted during: delete compute.c, sync upload.u. Converging "
     "from live state."),
    (Repaired("run r_1 submitted"), "Recovered: run r_1 submitted"),
    (StateNote("the lease was broken"), "the lease was broken"),
    (ActionDone("compute.c", "create"), None),
])
def test_the_text_view_words_each_event(event: Event, line: str | None) -> None:
    written: list[str] = []
    TextView(written.append).event(event)
    assert event_line(event) == line
    assert written == ([] if line is None else [line + "\n"])


def test_every_event_is_imported_from_events_whatever_module_defines_it() -> None:
    """The step events are defined apart (loaded on first use), yet events.py stays their
    one public home: the same classes, one Event union, and a clear error for a typo."""
    import amlctl.engine.events as events
    import amlctl.engine.step_events as step_events

    for name in ("StateNote", "InterruptedSteps", "Repaired", "StepStarted", "ActionDone",
                 "Synced", "RunSubmitted", "RunsCanceled", "StepFinished", "StepFailed",
                 "UploadWarning", "StepOutcome", "Event"):
        assert getattr(events, name) is getattr(step_events, name), name
        assert name in events.__all__
    assert StepStarted is step_events.StepStarted
    assert isinstance(PlanReady(Plan(stack="s", backend="local", manifest="m", changes=())),
                      Event)
    with pytest.raises(AttributeError, match="StepStartd"):
        events.StepStartd  # noqa: B018

