"""Options shared by every command, and the context object carrying them."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from amlctl import __version__
from amlctl.errors import UsageError


@dataclass
class Settings:
    """What the global options said, handed to every command through the typer context."""

    backend: str | None = None
    variables: dict[str, Any] = field(default_factory=dict)
    var_files: list[Path] = field(default_factory=list)
    color: bool = True
    verbose: int = 0


def file_path(text: str) -> Path:
    """A file name from the command line; an empty one is an error, not the current folder."""
    if not text:
        raise typer.BadParameter("the file name is empty")
    if "\0" in text:
        raise typer.BadParameter("the file name contains a NUL character")
    return Path(text)


ManifestOption = Annotated[
    Path | None,
    typer.Option(
        "--file", "-f", envvar="AMLCTL_FILE", show_default=False, parser=file_path,
        help="Manifest to read [default: ./amlctl.yaml].",
    ),
]


def _version(value: bool) -> None:
    if value:
        typer.echo(f"amlctl {__version__}")
        raise typer.Exit()


def parse_var(text: str) -> tuple[str, Any]:
    """`k=v` from --var; the value is typed like a YAML scalar (3 -> int, true -> bool)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise UsageError(f"--var {text!r}: expected NAME=VALUE")
    return key.strip(), _scalar(value)


def _scalar(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("null", "~"):
        return None
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return value


def global_options(
    ctx: typer.Context,
    backend: Annotated[
        str | None,
        typer.Option(envvar="AMLCTL_BACKEND", metavar="NAME",
                     help="Backend: local or azure (overrides the manifest's `backend:`)."),
    ] = None,
    var: Annotated[
        list[str] | None,
        typer.Option("--var", envvar="AMLCTL_VAR", metavar="NAME=VALUE",
                     help="Set a template variable, NAME=VALUE (repeatable)."),
    ] = None,
    var_file: Annotated[
        list[Path] | None,
        typer.Option("--var-file", envvar="AMLCTL_VAR_FILE", metavar="FILE", parser=file_path,
                     help="YAML file of template variables (repeatable)."),
    ] = None,
    no_color: Annotated[
        bool, typer.Option("--no-color", envvar="AMLCTL_NO_COLOR", help="Plain output.")
    ] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, envvar="AMLCTL_VERBOSE",
                          help="More logging (-vv for debug).")
    ] = 0,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True,
                           help="Print the version and exit.")
    ] = False,
) -> None:
    """Declarative config-as-code for Azure Machine Learning: plan, apply, destroy."""
    if backend is not None and backend not in ("local", "azure"):
        raise UsageError(f"--backend {backend!r}: expected local or azure")
    ctx.obj = Settings(
        backend=backend,
        variables=dict(parse_var(v) for v in (var or [])),
        var_files=list(var_file or []),
        color=not no_color,
        verbose=verbose,
    )
    logging.basicConfig(
        level=logging.WARNING - 10 * min(verbose, 2),
        format="%(levelname)s %(name)s: %(message)s",
    )


def settings(ctx: typer.Context) -> Settings:
    """The Settings of the current invocation (defaults when a command runs standalone)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()
