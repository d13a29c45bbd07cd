"""`amlctl convert`: turn other tools' configurations into a manifest (Batch AI for now)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    name="convert",
    help="Convert configurations of other tools (Batch AI) into an amlctl manifest.",
    no_args_is_help=True,
)


@app.callback()
def convert() -> None:
    """Convert configurations of other tools (Batch AI) into an amlctl manifest."""
    # A callback keeps `convert` a command group even while it holds a single converter.


@app.command("batchai")
def batchai(
    cluster: Annotated[
        list[Path] | None,
        typer.Option("--cluster", metavar="FILE", help="Batch AI cluster JSON (repeatable)."),
    ] = None,
    job: Annotated[
        list[Path] | None,
        typer.Option("--job", metavar="FILE", help="Batch AI job JSON (repeatable)."),
    ] = None,
    output: Annotated[
        Path, typer.Option("--output", "-o", metavar="FILE", help="Manifest to write.")
    ] = Path("amlctl.yaml"),
    report: Annotated[
        Path | None,
        typer.Option("--report", metavar="FILE", help="Also write the report as Markdown."),
    ] = None,
    workspace: Annotated[
        str | None, typer.Option("--workspace", metavar="NAME", help="Azure ML workspace name.")
    ] = None,
    resource_group: Annotated[
        str | None,
        typer.Option("--resource-group", metavar="RG", help="Resource group of the workspace."),
    ] = None,
    location: Annotated[
        str | None,
        typer.Option("--location", metavar="REGION", help="Azure region of the workspace."),
    ] = None,
    subscription_id: Annotated[
        str | None, typer.Option("--subscription-id", metavar="ID", help="Azure subscription id.")
    ] = None,
    no_compat: Annotated[
        bool,
        typer.Option("--no-compat", help="Scripts read TF_CONFIG: drop Batch AI host and "
                     "task-index flags, never set compat: batchai."),
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite the output and report files.")
    ] = False,
) -> None:
    """Convert Batch AI cluster and job files into a manifest and a migration report."""
    from amlctl.convert import ConvertError, convert_batchai

    for path in (output, report):
        if path is not None and path.exists() and not force:
            raise ConvertError(f"{path} exists; pass --force to overwrite it")
    conversion = convert_batchai(
        list(cluster or []), list(job or []), workspace=workspace,
        resource_group=resource_group, location=location, subscription_id=subscription_id,
        compat=not no_compat,
    )
    text = conversion.to_yaml()
    _write(output, text)
    if report is not None:
        _write(report, conversion.report.to_markdown())
    typer.echo(conversion.report.to_text(), nl=False)
    written = f"{output}" + (f" and {report}" if report is not None else "")
    typer.echo(f"\nWrote {written}. Next: do what the report lists, then "
               f"`amlctl validate -f {output}`.")


def _write(path: Path, text: str) -> None:
    """Write through a temporary file, so an interrupted run leaves no half-written file."""
    from amlctl.convert import ConvertError

    temporary = path.with_name(f".{path.name}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary.write_text(text, encoding="utf-8")
        temporary.replace(path)
    except OSError as err:
        temporary.unlink(missing_ok=True)
        raise ConvertError(f"{path}: cannot write it: {err.strerror or err}") from None
