"""Commands that read the manifest only: validate, render, schema."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from amlctl.cli.options import ManifestOption, settings
from amlctl.manifest.loader import LoadedManifest, load_manifest, resolve_manifest_path


def load(ctx: typer.Context, file: Path | None, *, allow_missing_secrets: bool = False
         ) -> LoadedManifest:
    """Load the manifest with the global --var/--var-file, printing warnings to stderr."""
    opts = settings(ctx)
    loaded = load_manifest(
        resolve_manifest_path(file),
        var_overrides=opts.variables,
        var_files=opts.var_files,
        allow_missing_secrets=allow_missing_secrets,
    )
    for warning in loaded.warnings:
        typer.echo(f"Warning: {warning}", err=True)
    return loaded


def validate(
    ctx: typer.Context,
    file: ManifestOption = None,
    files: Annotated[list[Path] | None, typer.Argument(
        help="More manifests to check (pre-commit passes the changed files here).")] = None,
) -> None:
    """Check manifests: syntax, fields, references, paths.

    Exit code 1, with every problem as FILE:LINE:COL: field.path: message, if one is invalid.
    """
    from amlctl.errors import AmlctlError, ManifestError

    paths = ([file] if file else []) + list(files or [])
    failed = 0
    for path in paths or [None]:
        try:
            _validate_one(ctx, path)
        except AmlctlError as err:
            if len(paths) <= 1:
                raise
            # one bad file (unreadable, a pipe) must not hide the verdict on the others
            typer.echo(str(err) if isinstance(err, ManifestError) else f"Error: {err}",
                       err=True)
            failed += 1
    if failed:
        raise typer.Exit(1)


def _validate_one(ctx: typer.Context, file: Path | None) -> None:
    loaded = load(ctx, file, allow_missing_secrets=True)
    for name in loaded.missing_secrets:
        typer.echo(f"Note: secret {name} is not set here; plan and apply will need it.",
                   err=True)
    m = loaded.manifest
    counts = ", ".join(
        f"{len(getattr(m, s))} {s}" for s in
        ("computes", "datastores", "uploads", "experiments", "runs")
    )
    typer.echo(f"{loaded.path}: valid (stack {m.name!r}, workspace {m.workspace.name!r}: "
               f"{counts})")


def render(ctx: typer.Context, file: ManifestOption = None) -> None:
    """Print the manifest after templating, secrets hidden.

    Secret values are shown as (sensitive).
    """
    from amlctl.manifest.render import render_yaml

    loaded = load(ctx, file, allow_missing_secrets=True)
    typer.echo(render_yaml(loaded.data), nl=False)


def graph(
    ctx: typer.Context,
    file: ManifestOption = None,
    output_format: Annotated[str, typer.Option(
        "--format", help="dot (Graphviz) or mermaid (GitHub Markdown).")] = "dot",
) -> None:
    """Print the manifest's dependency graph: an arrow from each resource to what needs it.

    `amlctl graph | dot -Tsvg > graph.svg`, or `--format mermaid` inside a Markdown page.
    """
    from amlctl.engine.desired import desired_state
    from amlctl.engine.graph import dependency_graph
    from amlctl.errors import UsageError
    from amlctl.render.graph import to_dot, to_mermaid

    if output_format not in ("dot", "mermaid"):
        raise UsageError(f"--format {output_format!r}: expected dot or mermaid")
    the_graph = dependency_graph(desired_state(load(ctx, file, allow_missing_secrets=True)))
    typer.echo((to_dot if output_format == "dot" else to_mermaid)(the_graph), nl=False)


def schema(
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Write to FILE instead of stdout.")
    ] = None,
) -> None:
    """Print or write the JSON Schema of manifests.

    For editors (yaml-language-server) and CI linters.
    """
    from amlctl.manifest.schema import schema_text

    text = schema_text()
    if output is None:
        typer.echo(text, nl=False)
    else:
        from amlctl.errors import UsageError

        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(text, encoding="utf-8")
        except OSError as err:
            raise UsageError(f"--output {output}: {err.strerror or err}") from None
        typer.echo(f"wrote {output}", err=True)
