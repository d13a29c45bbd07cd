"""What `apply` and `destroy` show and ask on the command line: the text view of an apply's
events (render/events.py) plus the confirmation prompts.

`make_view` is the one place these commands get their view from. A program embedding amlctl
(or a test driving the real command, e.g. to pause it at an event) may replace it with a
factory that wraps the view it returns.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TYPE_CHECKING

import typer

from amlctl.cli import resume_gc
from amlctl.engine.events import PlanReady
from amlctl.engine.operation import OperationView
from amlctl.engine.plan import Plan
from amlctl.errors import UsageError
from amlctl.render.events import TextView
from amlctl.render.human import Style

if TYPE_CHECKING:
    from amlctl.engine.events import Event
    from amlctl.uploads.progress import SyncProgress


def _write(text: str) -> None:
    typer.echo(text, nl=False)


def _progress(address: str) -> SyncProgress:
    from amlctl.uploads.progress import progress_for

    return progress_for(address)  # a bar on a terminal, one summary line otherwise


class CliView(TextView):
    """Events as lines on stdout, upload progress on stderr, confirmations on the terminal."""

    def __init__(self, style: Style) -> None:
        super().__init__(_write, style, _progress)

    def event(self, event: Event) -> None:
        """Show one event; a plan with changes ends the start-up pause of the garbage
        collector (amlctl.cli.resume_gc): applying it collects as usual."""
        if isinstance(event, PlanReady) and event.plan.has_changes:
            resume_gc()
        super().event(event)

    def confirm_actions(self, plan: Plan) -> None:
        """Ask for 'yes' on a terminal; refuse without one."""
        what = "destroy these resources" if plan.destroy else "perform these actions"
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to {what} without confirmation: no terminal to ask on. "
                             "Pass --auto-approve (CI), or apply a saved plan file.")
        answer = typer.prompt(f"Do you want to {what}? Only 'yes' will be accepted", default="")
        if answer.strip() != "yes":
            raise UsageError(f"{what} canceled")

    def confirm_runs(self, plan: Plan) -> None:
        """Active runs a cluster's replace or delete would cancel: asked about on their own
        (even with --auto-approve); refused without a terminal."""
        listed = ", ".join(f"{r['id']} ({r['name']}, {r['status']} on {r['compute']})"
                           for r in plan.interrupted_runs)
        if not sys.stdin.isatty():
            raise UsageError(f"refusing to replace or delete a cluster with active runs: "
                             f"{listed} would be cancelled or lose their compute. Pass "
                             "--cancel-runs to allow it, or wait until they end.")
        answer = typer.prompt(f"These active runs will be cancelled or lose their compute: "
                              f"{listed}. Go on? Only 'yes' will be accepted", default="")
        if answer.strip() != "yes":
            raise UsageError("apply canceled: active runs left alone")


make_view: Callable[[Style], OperationView] = CliView
