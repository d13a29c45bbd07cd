"""runs, logs, cancel: look at and steer submitted runs."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer

from amlctl.cli.engine_cmds import engine_context
from amlctl.cli.options import ManifestOption
from amlctl.errors import UsageError

if TYPE_CHECKING:
    from amlctl.providers.base import MetricSeries, Provider, RunInfo


def _resolve(provider: Provider, run: str) -> str:
    """A run id from an id or `run.NAME` (its latest run)."""
    if run.startswith("run."):
        found = provider.list_runs(name=run[4:])
        if not found:
            raise UsageError(f"{run} has no submitted run yet")
        return found[0].id
    if provider.get_run(run) is None:
        raise UsageError(f"no run {run!r} in the workspace (use an id from `amlctl runs`, or "
                         "run.NAME)")
    return run


def run_metrics_by_id(provider: Provider, runs: list[RunInfo]) -> dict[str, list[MetricSeries]]:
    """Each run's metrics, for the metrics column of `runs` and `status`. A column is not
    worth failing the command for: when the backend cannot read them, the reason is printed
    once on stderr and the column stays empty."""
    from amlctl.errors import AmlctlError

    found: dict[str, list[MetricSeries]] = {}
    for run in runs:
        try:
            found[run.id] = provider.run_metrics(run.id)
        except AmlctlError as err:
            typer.echo(f"Warning: metrics not shown: {err}", err=True)
            return {r.id: [] for r in runs}
    return found


def runs(
    ctx: typer.Context,
    file: ManifestOption = None,
    experiment: Annotated[str | None, typer.Option(help="Only this experiment.")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """List runs, newest first, with their latest metrics."""
    from amlctl.metrics.charts import latest, latest_values

    with engine_context(ctx, file) as context:
        found = context.provider.list_runs(experiment=experiment)
        metrics = run_metrics_by_id(context.provider, found)
    if json_output:
        typer.echo(json.dumps([
            {"id": r.id, "name": r.name, "experiment": r.experiment, "status": r.status,
             "compute": r.compute, "spec_hash": r.spec_hash, "created_at": r.created_at,
             "started_at": r.started_at, "ended_at": r.ended_at, "error": r.error,
             "metrics": latest_values(metrics[r.id])}
            for r in found], indent=2))
        return
    if not found:
        typer.echo("No runs.")
        return
    typer.echo(f"{'RUN ID':<44} {'NAME':<16} {'STATUS':<10} {'STARTED':<19} {'DURATION':<8} "
               "METRICS")
    for r in found:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(r.started_at)) \
            if r.started_at else "-"
        end = r.ended_at or (time.time() if r.active else None)
        duration = f"{end - r.started_at:.0f}s" if end and r.started_at else "-"
        typer.echo(f"{r.id:<44} {r.name:<16} {r.status:<10} {started:<19} {duration:<8} "
                   f"{latest(metrics[r.id])}")


def logs(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A run id, or run.NAME for its latest run.")],
    file: ManifestOption = None,
    follow: Annotated[bool, typer.Option("--follow", "-F", help="Keep streaming until the run "
                                          "ends.")] = False,
    role: Annotated[str | None, typer.Option(help="Only this process (worker:1, ps:0) or role "
                                             "(worker); the same names on every backend."
                                             )] = None,
) -> None:
    """Print a run's logs (one stream per role, lines prefixed by role)."""
    with engine_context(ctx, file) as context:
        run_id = _resolve(context.provider, run)
        for line in context.provider.run_logs(run_id, role=role, follow=follow):
            typer.echo(line)


def cancel(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A run id, or run.NAME for its latest run.")],
    file: ManifestOption = None,
) -> None:
    """Cancel a run."""
    with engine_context(ctx, file) as context:
        run_id = _resolve(context.provider, run)
        info = context.provider.cancel_run(run_id)
    typer.echo(f"Run {info.id}: {info.status}")
