"""`amlctl state ...`: inspect and repair the stack's state where its backend keeps it."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from amlctl.cli.manifest_cmds import load
from amlctl.cli.options import ManifestOption, settings

app = typer.Typer(
    name="state", no_args_is_help=True,
    help="The stack's state (applied record, step journal, identity) in its backend.",
)

LockTimeout = Annotated[
    float, typer.Option("--lock-timeout", help="Seconds to wait for the workspace lock.")
]


@app.command()
def pull(ctx: typer.Context, file: ManifestOption = None) -> None:
    """Print the state as JSON (the fingerprint key redacted; secrets are never in it)."""
    from amlctl.engine.planner import open_context

    loaded = load(ctx, file, allow_missing_secrets=True)
    context = open_context(loaded, settings(ctx).backend, check_identity=False)
    try:
        document = context.state.document()
        location = context.state.location
    finally:
        context.close()
    typer.echo(json.dumps({"location": location, **document}, indent=2, sort_keys=True))


@app.command()
def forget(
    ctx: typer.Context,
    file: ManifestOption = None,
    lock_timeout: LockTimeout = 0.0,
) -> None:
    """Drop the applied record (after the workspace was lost knowingly); nothing live changes."""
    from amlctl.engine.planner import open_context

    loaded = load(ctx, file, allow_missing_secrets=True)
    context = open_context(loaded, settings(ctx).backend)
    try:
        with context.state.lock("amlctl state forget", lock_timeout):
            count = context.state.forget_applied()
    finally:
        context.close()
    typer.echo(f"Forgot {count} applied records. The next plan compares the manifest with "
               "the workspace as it is.")


@app.command()
def rebind(
    ctx: typer.Context,
    file: ManifestOption = None,
    lock_timeout: LockTimeout = 0.0,
) -> None:
    """Make this manifest the owner of the stack's state (the manifest moved)."""
    from amlctl.engine.planner import open_context
    from amlctl.engine.state import describe_identity, manifest_origin

    loaded = load(ctx, file, allow_missing_secrets=True)
    context = open_context(loaded, settings(ctx).backend, check_identity=False)
    try:
        with context.state.lock("amlctl state rebind", lock_timeout):
            origin = manifest_origin(loaded.path)
            old = context.state.rebind(origin)
            new = context.state.identity() or {}
    finally:
        context.close()
    typer.echo(f"Stack {loaded.manifest.name!r} was {describe_identity(old) if old else 'unbound'}"
               f"; it is now {describe_identity(new)}.")
