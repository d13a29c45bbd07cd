"""`amlctl local ...`: testing aids for the local backend (hidden from the main help)."""

from __future__ import annotations

from typing import Annotated

import typer

from amlctl.cli.manifest_cmds import load
from amlctl.cli.options import ManifestOption, parse_var
from amlctl.errors import UsageError

app = typer.Typer(
    name="local", hidden=True, no_args_is_help=True,
    help="Testing aids for the local backend: change live state behind amlctl's back.",
)


@app.command()
def edit(
    ctx: typer.Context,
    address: Annotated[str, typer.Argument(help="e.g. compute.nc6")],
    assignments: Annotated[list[str], typer.Argument(help="FIELD=VALUE pairs, e.g. max_nodes=5")],
    file: ManifestOption = None,
    create: Annotated[bool, typer.Option(
        "--create", help="Create the object, owned by no stack (as if made in the portal).")
    ] = False,
) -> None:
    """Change a live object as the portal would (drift), or create an unowned one."""
    from amlctl.engine.address import split
    from amlctl.engine.planner import state_dir_for
    from amlctl.providers.local.provider import LocalProvider

    split(address)
    changes = dict(parse_var(a) for a in assignments)
    if "tags" in changes:
        raise UsageError("set tags with tags.NAME=VALUE")
    tags = {k.split(".", 1)[1]: str(v) for k, v in changes.items() if k.startswith("tags.")}
    changes = {k: v for k, v in changes.items() if not k.startswith("tags.")}
    loaded = load(ctx, file, allow_missing_secrets=True)
    provider = LocalProvider(loaded.manifest.workspace.model_dump(), loaded.manifest.name,
                             state_dir_for(loaded))
    try:
        if tags:
            current = provider.read_all().get(address)
            changes["tags"] = {**((current.attrs.get("tags") or {}) if current else {}), **tags}
        provider.edit(address, changes, create=create)
    finally:
        provider.close()
    typer.echo(f"{address}: live state changed ({', '.join(assignments)})")
