"""Options shared by every command, and the context object carrying them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from amlctl import __version__
from amlctl.errors import UsageError

# Commands that only read the manifest: nothing in them logs.
MANIFEST_ONLY = frozenset({"validate", "render", "graph", "schema"})


@dataclass(eq=False)  # one per command, never compared: no __eq__ compiled at start
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
                     help="Backend: local, azure (SDK v1) or azure-v2 (SDK v2); overrides the "
                          "manifest's `backend:`."),
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
    from amlctl.providers import BACKEND_NAMES

    if backend is not None and backend not in BACKEND_NAMES:
        raise UsageError(f"--backend {backend!r}: expected one of {', '.join(BACKEND_NAMES)}")
    ctx.obj = Settings(
        backend=backend,
        variables=dict(parse_var(v) for v in (var or [])),
        var_files=list(var_file or []),
        color=not no_color,
        verbose=verbose,
    )
    if verbose or ctx.invoked_subcommand not in MANIFEST_ONLY:
        import logging  # only where something logs: the manifest commands start faster

        logging.basicConfig(
            level=logging.WARNING - 10 * min(verbose, 2),
            format="%(levelname)s %(name)s: %(message)s",
        )


def settings(ctx: typer.Context) -> Settings:
    """The Settings of the current invocation (defaults when a command runs standalone)."""
    obj = ctx.find_root().obj
    return obj if isinstance(obj, Settings) else Settings()


# Global options a user may also write after the command (`amlctl plan --backend azure`), as
# az and kubectl allow: those taking a value, and flags (with `-v`, `-vv`... for --verbose).
GLOBAL_WITH_VALUE = ("--backend", "--var", "--var-file")
GLOBAL_FLAGS = ("--no-color", "--verbose")


def hoist_global_options(root: Any, argv: list[str]) -> list[str]:
    """`argv` with the global options found after the command moved to just before it.

    The command's own options are read from its click definition, so an option value is
    never mistaken for a global option (`--out --var` keeps `--var` as the file name), and a
    command defining an option of the same name keeps it. Nothing after `--` moves.
    """
    first = _skip_root_options(root, argv)
    index = first
    command: Any = root
    # typer ships its own copy of click: use the objects it built, duck-typed.
    with root.context_class(root, resilient_parsing=True) as ctx:
        while index < len(argv) and hasattr(command, "get_command"):
            sub = command.get_command(ctx, argv[index])
            if sub is None:
                return argv
            command, index = sub, index + 1
    if command is root:
        return argv
    own_value, own_names = _option_names(command)
    hoisted: list[str] = []
    kept: list[str] = []
    rest = argv[index:]
    i = 0
    while i < len(rest):
        token = rest[i]
        name = token.split("=", 1)[0]
        if token == "--":
            kept.extend(rest[i:])
            break
        if name in own_names or (token.startswith("-v") and "-v" in own_names):
            kept.append(token)
            if name in own_value and "=" not in token and i + 1 < len(rest):
                kept.append(rest[i + 1])
                i += 1
        elif name in GLOBAL_WITH_VALUE:
            hoisted.append(token)
            if "=" not in token:
                if i + 1 == len(rest):
                    raise UsageError(f"{token} needs a value")
                hoisted.append(rest[i + 1])
                i += 1
        elif token in GLOBAL_FLAGS or (len(token) > 1 and token.strip("v") == "-"):
            hoisted.append(token)
        else:
            kept.append(token)
        i += 1
    return [*argv[:first], *hoisted, *argv[first:index], *kept]


def first_command(argv: list[str]) -> str | None:
    """The command named in `argv` (after any global options), if there is one."""
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        i += 2 if argv[i] in GLOBAL_WITH_VALUE else 1
    return argv[i] if i < len(argv) and not argv[i].startswith("-") else None


def _skip_root_options(root: Any, argv: list[str]) -> int:
    """Index of the first token after the options given before the command."""
    value_options, _ = _option_names(root)
    i = 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "--":
        if argv[i] in value_options:
            i += 1
        i += 1
    return i


def _option_names(command: Any) -> tuple[set[str], set[str]]:
    """(names of options taking a value, names of all options) of one command."""
    with_value: set[str] = set()
    every: set[str] = set()
    for param in command.params:
        if param.param_type_name == "option":
            names = {*param.opts, *param.secondary_opts}
            every |= names
            if not param.is_flag and not param.count:
                with_value |= names
    return with_value, every
