"""metrics, watch: what a run logged, and a live view of a run."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from amlctl.cli.engine_cmds import engine_context
from amlctl.cli.options import ManifestOption
from amlctl.cli.runs_cmds import _resolve

if TYPE_CHECKING:
    from amlctl.providers.base import Provider

REMOTE_INTERVAL = 10.0
RunArgument = Annotated[str, typer.Argument(help="A run id, or run.NAME for its latest run.")]


def metrics(
    ctx: typer.Context,
    run: RunArgument,
    file: ManifestOption = None,
    json_output: Annotated[bool, typer.Option("--json", help="JSON output (every point).")
                           ] = False,
    plot: Annotated[Path | None, typer.Option(
        "--plot", metavar="FILE.png",
        help="Also draw each metric against its step into a PNG (needs amlctl[plot]).")
    ] = None,
) -> None:
    """Every metric a run logged (MLflow): last, min, max, steps and a small chart."""
    from amlctl.metrics import charts

    with engine_context(ctx, file) as context:
        run_id = _resolve(context.provider, run)
        series = context.provider.run_metrics(run_id)
    if plot is not None:
        width, height = charts.plot(series, plot, title=f"{run} ({run_id})")
        typer.echo(f"Wrote {plot} ({width}x{height} px).", err=json_output)
    if json_output:
        typer.echo(json.dumps({"run": run_id,
                               "metrics": {s.name: s.summary() for s in series}}, indent=2))
        return
    if not series:
        typer.echo(f"Run {run_id} has logged no metrics.")
        return
    for line in charts.table(series):
        typer.echo(line)


def watch(
    ctx: typer.Context,
    run: RunArgument,
    file: ManifestOption = None,
    interval: Annotated[float | None, typer.Option(
        help="Seconds between two reads of the run (default: 1 on the local backend, "
             f"{REMOTE_INTERVAL:.0f} on a remote one).")] = None,
) -> None:
    """Follow a run live: each role's state and last line, elapsed time, metrics.

    Exits 0 when the run completes, 1 when it fails or is canceled. Ctrl-C stops watching,
    not the run.
    """
    with engine_context(ctx, file) as context:
        run_id = _resolve(context.provider, run)
        final = watch_run(context.provider, run_id, interval)
    if final != "Completed":
        raise typer.Exit(1)


def watch_run(provider: Provider, run_id: str, interval: float | None = None) -> str:
    """Show the live view of one run on stdout until it ends; its final status. A terminal
    gets the view redrawn in place, anything else plain lines."""
    from amlctl.metrics.watch import watch as watch_loop

    if interval is None:  # every read of a remote run is a few service requests
        interval = 1.0 if provider.name == "local" else REMOTE_INTERVAL
    tty = sys.stdout.isatty() and os.environ.get("TERM") != "dumb"  # dumb: no cursor moves
    size = shutil.get_terminal_size()
    width, height = (size.columns - 1, size.lines - 1) if tty else (200, None)

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    try:
        final = watch_loop(provider, run_id, write, tty=tty, interval=max(0.1, interval),
                           width=width, height=height)
    except KeyboardInterrupt:
        typer.echo(f"\nStopped watching. Run {run_id} goes on (`amlctl cancel {run_id}` "
                   "stops it).", err=True)
        raise typer.Exit(130) from None
    typer.echo(f"Run {final.id}: {final.status}" + (f": {final.error}" if final.error else ""))
    return final.status

