"""plan, apply, destroy, show, status, import, force-unlock: a few lines each over the engine."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from amlctl.cli import resume_gc
from amlctl.cli.manifest_cmds import load
from amlctl.cli.options import ManifestOption, settings
from amlctl.errors import UsageError

if TYPE_CHECKING:
    from amlctl.engine.executor import ApplyResult
    from amlctl.engine.operation import ApplyRequest
    from amlctl.engine.plan import Plan
    from amlctl.engine.planfile import SavedPlan
    from amlctl.engine.planner import Context
    from amlctl.providers.base import ComputeStatus, RunInfo

TargetOption = Annotated[
    list[str] | None,
    typer.Option("--target", metavar="ADDRESS",
                 help="Limit to this resource and what it depends on (repeatable)."),
]
ReplaceOption = Annotated[
    list[str] | None,
    typer.Option("--replace", metavar="ADDRESS",
                 help="Replace this resource (or resubmit this run) even if unchanged "
                      "(repeatable)."),
]
CancelRunsOption = Annotated[
    bool, typer.Option("--cancel-runs", help="Allow the plan to cancel the queued or running "
                       "runs on a cluster it replaces or deletes (asked on a terminal).")]
LockTimeout = Annotated[
    float, typer.Option("--lock-timeout", help="Seconds to wait for the workspace lock.")
]
IncludeData = Annotated[bool, typer.Option(
    "--include-data", help="Also delete the uploaded files of uploads removed from the "
                           "manifest (kept by default, as destroy keeps them).")]


@contextmanager
def engine_context(ctx: typer.Context, file: Path | None,
                   allow_missing_secrets: bool = False, *, collect: bool = True
                   ) -> Iterator[Context]:
    """Load the manifest and bind it to its backend for the duration of a command.

    `collect=False` keeps the start-up pause of the garbage collector on (see amlctl.cli):
    for a plan, which builds no garbage in cycles whatever the size of its uploads, and for
    apply and destroy until they change something (apply_view resumes it then)."""
    from amlctl.engine.planner import open_context

    loaded = load(ctx, file, allow_missing_secrets=allow_missing_secrets)
    context = open_context(loaded, settings(ctx).backend)
    if collect:
        resume_gc()  # start-up is over: the command's own work collects as usual
    try:
        yield context
    finally:
        context.close()


def _styler(ctx: typer.Context) -> Any:
    from amlctl.render.human import plain

    if not settings(ctx).color or not sys.stdout.isatty():
        return plain
    colors = {"green": "green", "yellow": "yellow", "red": "red", "magenta": "magenta"}

    def style(text: str, color: str) -> str:
        if color == "bold":
            return typer.style(text, bold=True)
        return typer.style(text, fg=colors[color]) if color in colors else text

    return style


def _print_plan(ctx: typer.Context, plan: Plan, output_format: str) -> None:
    # each renderer is imported only when its format is asked for
    if output_format == "json":
        from amlctl.render.jsonplan import render_json

        typer.echo(render_json(plan), nl=False)
    elif output_format == "markdown":
        from amlctl.render.markdown import render_markdown

        typer.echo(render_markdown(plan), nl=False)
    else:
        from amlctl.render.human import render_plan

        typer.echo(render_plan(plan, _styler(ctx)), nl=False)


def plan(
    ctx: typer.Context,
    file: ManifestOption = None,
    out: Annotated[Path | None, typer.Option("--out", help="Save the plan for `apply FILE`.")
                   ] = None,
    detailed_exitcode: Annotated[bool, typer.Option(
        "--detailed-exitcode", help="Exit 2 when there are changes (0 none, 1 error).")] = False,
    target: TargetOption = None,
    replace: ReplaceOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
    output_format: Annotated[str, typer.Option(
        "--format", help="text, json or markdown (a pull-request comment).")] = "text",
    destroy: Annotated[bool, typer.Option("--destroy", help="Plan a destroy instead.")] = False,
    include_data: IncludeData = False,
) -> None:
    """Show what apply would change to make the workspace match the manifest."""
    from amlctl.engine.planner import make_destroy_plan, make_plan

    fmt = "json" if json_output else output_format
    if fmt not in ("text", "json", "markdown"):
        raise UsageError(f"--format {fmt!r}: expected text, json or markdown")
    if out is not None:  # plan files are written only with --out: loaded only then
        from amlctl.engine.planfile import check_destination, save_plan

        check_destination(out)
    with engine_context(ctx, file, collect=False) as context:
        if destroy:
            the_plan = make_destroy_plan(context, include_data=include_data)
        else:
            the_plan = make_plan(context, targets=target or [],
                                 replace_addresses=replace or [], include_data=include_data)
    _print_plan(ctx, the_plan, fmt)
    if out is not None:
        save_plan(the_plan, out, targets=target or [], replace=replace or [],
                  variables=settings(ctx).variables)
        typer.echo(f"Saved the plan to {out}. Apply exactly it with `amlctl apply {out}`.",
                   err=True)
    if detailed_exitcode and the_plan.has_changes:
        raise typer.Exit(2)


def apply(
    ctx: typer.Context,
    planfile: Annotated[Path | None, typer.Argument(
        help="A plan saved with `plan --out`; applied exactly, without asking.")] = None,
    file: ManifestOption = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask.")] = False,
    target: TargetOption = None,
    replace: ReplaceOption = None,
    wait: Annotated[bool, typer.Option(
        "--wait", help="Wait for submitted runs, exit 1 if one fails. On a terminal: the live "
                       "view of `watch`; otherwise their logs are streamed.")
    ] = False,
    lock_timeout: LockTimeout = 0.0,
    include_data: IncludeData = False,
    cancel_runs: CancelRunsOption = False,
) -> None:
    """Make the workspace match the manifest: create, update, replace, delete, upload, submit."""
    from amlctl.engine.operation import ApplyRequest, backend_for_saved

    saved: SavedPlan | None = None
    if planfile is not None:  # the plan-file module is loaded only for `apply FILE`
        from amlctl.engine.planfile import load_plan, manifest_of

        saved = load_plan(planfile)
        if file is None:
            file = manifest_of(saved, planfile)  # type: ignore[arg-type]
        settings(ctx).backend = backend_for_saved(
            saved, settings(ctx).backend, options_given=bool(target or replace or include_data))
        settings(ctx).variables = {**saved.variables, **settings(ctx).variables}
    request = ApplyRequest(
        command="amlctl apply", targets=tuple(target or ()), replace=tuple(replace or ()),
        include_data=include_data, saved=saved, auto_approve=auto_approve,
        cancel_runs=cancel_runs, lock_timeout=lock_timeout, wait=wait)
    _operate(ctx, file, request, "Apply")


def _operate(ctx: typer.Context, file: Path | None, request: ApplyRequest, verb: str) -> None:
    """Run the apply operation with the command line's view; report; wait on runs."""
    from amlctl.cli import apply_view
    from amlctl.engine.operation import run_apply

    with engine_context(ctx, file, collect=False) as context:
        outcome = run_apply(context, request, apply_view.make_view(_styler(ctx)))
        if outcome.result is None:
            typer.echo(f"{verb} complete. Nothing to do.")
        else:
            _report_result(outcome.result, outcome.plan)
        if request.wait:
            _wait_for_runs(context, outcome.runs_to_wait_on)


def _report_result(result: ApplyResult, plan: Plan) -> None:
    done = len(result.done)
    failed = result.failed
    skipped = result.skipped
    if failed:
        typer.echo(f"Apply failed: {done} done, {len(failed)} failed, {len(skipped)} not "
                   "started.", err=True)
        for address, error in failed.items():
            typer.echo(f"  {address}: {error}", err=True)
        raise typer.Exit(1)
    counts = plan.counts()
    verb = "Destroy" if plan.destroy else "Apply"
    typer.echo(f"{verb} complete. Resources: {counts['add']} added, {counts['change']} changed, "
               f"{counts['destroy']} destroyed.")


def _wait_for_runs(context: Context, runs: tuple[RunInfo, ...]) -> None:
    """Follow each run (just submitted, or the latest of each of the manifest's runs)."""
    resume_gc()  # waiting may take hours: collect as usual
    provider = context.provider
    failed = []
    live_view = sys.stdout.isatty()  # a terminal gets `watch`'s view, logs and CI the logs
    for run in runs:
        typer.echo(f"Waiting for run {run.id} ({run.name})...")
        if live_view:
            from amlctl.cli.metrics_cmds import watch_run

            if watch_run(provider, run.id) != "Completed":
                failed.append(run.id)
            continue
        for line in provider.run_logs(run.id, follow=True):
            typer.echo(line)
        final = provider.get_run(run.id)
        typer.echo(f"Run {run.id}: {final.status}" + (f": {final.error}" if final.error
                                                        else ""))
        if final.status != "Completed":
            failed.append(run.id)
    if failed:
        raise typer.Exit(1)


def destroy(
    ctx: typer.Context,
    file: ManifestOption = None,
    auto_approve: Annotated[bool, typer.Option("--auto-approve", help="Do not ask.")] = False,
    include_data: Annotated[bool, typer.Option(
        "--include-data", help="Also delete uploaded files.")] = False,
    include_workspace: Annotated[bool, typer.Option(
        "--include-workspace", help="Also delete the workspace itself.")] = False,
    lock_timeout: LockTimeout = 0.0,
    cancel_runs: CancelRunsOption = False,
) -> None:
    """Delete everything this stack owns: cancel active runs, delete clusters and datastores."""
    from amlctl.engine.operation import ApplyRequest

    request = ApplyRequest(
        command="amlctl destroy", destroy=True, include_data=include_data,
        include_workspace=include_workspace, auto_approve=auto_approve,
        cancel_runs=cancel_runs, lock_timeout=lock_timeout)
    _operate(ctx, file, request, "Destroy")


def show(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="e.g. compute.nc6, workspace, run.tf-mnist")],
    file: ManifestOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Show one resource as it is live in the workspace."""
    from amlctl.engine.address import split

    kind, name = split(address)
    with engine_context(ctx, file) as context:
        provider = context.provider
        if kind == "run":
            runs = provider.list_runs(name=name)
            body: dict[str, object] = {"address": address, "runs": [
                {"id": r.id, "status": r.status, "spec_hash": r.spec_hash, "error": r.error}
                for r in runs]}
        else:
            live = provider.read_all().get(address)
            if live is None:
                raise UsageError(f"{address} does not exist in the workspace")
            body = {"address": address, "owner": live.owner, "attributes": live.attrs}
    if json_output:
        typer.echo(json.dumps(body, indent=2))
    else:
        from amlctl.render.values import show as show_value

        for key, value in body.items():
            if isinstance(value, dict):
                typer.echo(f"{key}:")
                for k, v in value.items():
                    typer.echo(f"  {k}: {show_value(v, str(v).startswith('sha256:'))}")
            elif isinstance(value, list):
                typer.echo(f"{key}:")
                for item in value:
                    typer.echo(f"  - {json.dumps(item)}")
            else:
                typer.echo(f"{key}: {value}")


def status(
    ctx: typer.Context,
    file: ManifestOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Each cluster's nodes and allocation, and each run's state and latest metrics."""
    from amlctl.cli.runs_cmds import run_metrics_by_id
    from amlctl.metrics.charts import latest, latest_values
    from amlctl.providers.resources import Address

    with engine_context(ctx, file) as context:
        provider = context.provider
        live = provider.read_all()
        names = [a.name for a in sorted(map(Address.parse, live)) if a.kind == "compute"]
        computes = {name: provider.compute_status(name) for name in names}
        runs = provider.list_runs()
        metrics = run_metrics_by_id(provider, runs)

    if json_output:
        typer.echo(json.dumps({
            "computes": {name: state.to_json() for name, state in computes.items()},
            "runs": [{"id": r.id, "name": r.name, "experiment": r.experiment,
                      "status": r.status, "error": r.error,
                      "metrics": latest_values(metrics[r.id])} for r in runs],
        }, indent=2))
        return
    if not live:
        typer.echo("The workspace does not exist yet (run `amlctl apply`).")
        return
    typer.echo("Computes:")
    for name, state in computes.items():
        typer.echo(f"  {name}: {_compute_line(state)}")
    typer.echo("Runs:")
    for run in runs:
        shown = latest(metrics[run.id])
        typer.echo(f"  {run.id}  {run.name}  {run.status}"
                   + (f"  {shown}" if metrics[run.id] else "")
                   + (f"  {run.error.splitlines()[0]}" if run.error else ""))
    if not runs:
        typer.echo("  (none)")


def _compute_line(state: ComputeStatus) -> str:
    """One cluster's status; a cluster still provisioning has no node counts yet."""
    from amlctl.providers.base import NODE_STATES

    if not state.provisioned:
        return f"provisioning state {state.provisioning_state}"
    nodes = ", ".join(f"{name} {state.nodes.get(name, 0)}" for name in NODE_STATES)
    bound = ("?" if state.min_nodes is None else state.min_nodes,
             "?" if state.max_nodes is None else state.max_nodes)
    line = (f"{state.allocation_state or '?'}, {state.current_nodes} nodes ({nodes}), "
            f"min {bound[0]} max {bound[1]}")
    return line + (f", errors: {'; '.join(state.errors)}" if state.errors else "")


def import_(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="The existing object to adopt.")],
    file: ManifestOption = None,
    lock_timeout: LockTimeout = 0.0,
) -> None:
    """Adopt an existing object into this stack (tags it as owned), so amlctl manages it."""
    from amlctl.engine.address import split
    from amlctl.engine.operation import import_resource

    split(address)
    with engine_context(ctx, file) as context:
        obj = import_resource(context, address, lock_timeout)
    typer.echo(f"{obj.address} is now managed by stack {obj.owner!r}. Run `amlctl plan` to see "
               "how it differs from the manifest.")


def force_unlock(
    ctx: typer.Context,
    lock_id: Annotated[str, typer.Argument(help="The id the lock error named.")],
    file: ManifestOption = None,
) -> None:
    """Release a lock whose holder cannot (only when no apply is really running)."""
    with engine_context(ctx, file, allow_missing_secrets=True) as context:
        holder, what = context.state.force_unlock(lock_id)
    typer.echo(f"Removed lock {lock_id} (held by {holder.get('command')}, pid "
               f"{holder.get('pid')} on {holder.get('host')}): {what}.")
