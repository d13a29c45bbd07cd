"""Apply and destroy as one engine operation: lock -> recover -> plan (or re-plan a saved
plan) -> stale check -> confirm -> apply -> runs to wait on.

The caller (the CLI) says what to do in an `ApplyRequest` and passes a view: the view is told
every event (engine/events.py) and is asked to confirm. The operation decides *whether* to
ask (not with --auto-approve or a saved plan; active runs only without --cancel-runs); the
view decides *how*, and refuses by raising a domain error. Nothing here prints or exits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from amlctl.engine.address import kind_of
from amlctl.engine.differ import secret_fields
from amlctl.engine.events import ApplyView, PlanReady
from amlctl.engine.executor import ApplyResult, apply_plan, recover
from amlctl.engine.plan import Plan
from amlctl.engine.planner import Context, make_destroy_plan, make_plan
from amlctl.errors import PlanError, UsageError
from amlctl.providers.base import LiveObject, RunInfo
from amlctl.providers.resources import KIND_BY_NAME

if TYPE_CHECKING:  # plan files are read only by `apply FILE`: loaded then (see run_apply)
    from amlctl.engine.planfile import SavedPlan


class OperationView(ApplyView, Protocol):
    """An apply's view that can also be asked to confirm. A confirm returns to go on and
    raises a domain error (e.g. UsageError) to refuse: nothing has been changed then."""

    def confirm_actions(self, plan: Plan) -> None:
        """Asked before applying a plan with changes (not with auto_approve or a saved
        plan)."""
        ...

    def confirm_runs(self, plan: Plan) -> None:
        """Asked when the plan cancels, or takes the compute of, `plan.interrupted_runs`
        (even with auto_approve; not with cancel_runs)."""
        ...


@dataclass(frozen=True)
class ApplyRequest:
    """What one apply or destroy is asked to do."""

    command: str = "amlctl apply"  # names the lock's holder to others
    destroy: bool = False
    targets: tuple[str, ...] = ()
    replace: tuple[str, ...] = ()
    include_data: bool = False
    include_workspace: bool = False
    saved: SavedPlan | None = None  # re-plan with its options; refuse if it is stale
    auto_approve: bool = False
    cancel_runs: bool = False
    lock_timeout: float = 0.0
    wait: bool = False  # find the runs to wait on


@dataclass(frozen=True)
class ApplyOutcome:
    """What the operation did: `result` is None when the plan had nothing to do."""

    plan: Plan
    result: ApplyResult | None
    runs_to_wait_on: tuple[RunInfo, ...] = field(default_factory=tuple)


def run_apply(ctx: Context, request: ApplyRequest, view: OperationView) -> ApplyOutcome:
    """Lock the workspace, repair an interrupted apply, plan, check a saved plan is still
    current, confirm, apply. The lock is released on return (waiting on runs needs none)."""
    with ctx.state.lock(request.command, request.lock_timeout):
        recover(ctx, view)
        plan = _plan(ctx, request)
        if request.saved is not None:
            from amlctl.engine.planfile import check_current

            check_current(request.saved, plan)
        view.event(PlanReady(plan, saved=request.saved is not None))
        result = None
        if plan.has_changes:
            if request.saved is None and not request.auto_approve:
                view.confirm_actions(plan)
            if plan.interrupted_runs and not request.cancel_runs:
                view.confirm_runs(plan)
            result = apply_plan(ctx, plan, view)
        runs: tuple[RunInfo, ...] = ()
        if request.wait and (result is None or result.ok):
            runs = _runs_to_wait_on(ctx, result)
    return ApplyOutcome(plan, result, runs)


def backend_for_saved(saved: SavedPlan, chosen: str | None, *, options_given: bool) -> str:
    """The backend a saved plan is applied through: the one it was made for. Refused before
    any backend is touched when another is chosen, or when plan options are repeated."""
    if chosen is not None and chosen != saved.backend:
        raise PlanError(f"the saved plan was made for the {saved.backend} backend, not "
                        f"{chosen}; apply it with --backend {saved.backend} or make a new "
                        "plan")
    if options_given:
        raise UsageError("--target, --replace and --include-data come from the saved plan; "
                         "do not repeat them with a plan file")
    return saved.backend


def import_resource(ctx: Context, address: str, lock_timeout: float = 0.0) -> LiveObject:
    """Adopt an existing object into the stack under the workspace lock, and record its
    live attributes as applied, so changes made to it outside amlctl show as drift from now
    on. Secrets, and unset fields (a write-only secret reads as unset), are left out:
    amlctl cannot tell what they hold, so the next plan does not claim to know."""
    with ctx.state.lock("amlctl import", lock_timeout):
        obj = ctx.provider.adopt(address)
        if KIND_BY_NAME[kind_of(address)].drift:  # only what drift is checked against
            secret = secret_fields(obj.attrs)
            ctx.state.record_applied(address, {k: v for k, v in obj.attrs.items()
                                                 if k not in secret and v is not None})
    return obj


def _plan(ctx: Context, request: ApplyRequest) -> Plan:
    saved = request.saved
    if saved is not None:  # the saved plan's own options
        if saved.destroy:
            return make_destroy_plan(ctx, include_data=saved.include_data,
                                     include_workspace=saved.include_workspace)
        return make_plan(ctx, targets=saved.targets, replace_addresses=saved.replace,
                         include_data=saved.include_data)
    if request.destroy:
        return make_destroy_plan(ctx, include_data=request.include_data,
                                 include_workspace=request.include_workspace)
    return make_plan(ctx, targets=request.targets, replace_addresses=request.replace,
                     include_data=request.include_data)


def _runs_to_wait_on(ctx: Context, result: ApplyResult | None) -> tuple[RunInfo, ...]:
    """The runs just submitted; with none, the latest run of each of the manifest's runs."""
    if result is not None and result.runs:
        return tuple(result.runs)
    latest = (ctx.provider.list_runs(name=name) for name in ctx.loaded.manifest.runs)
    return tuple(runs[0] for runs in latest if runs)
