"""The `amlctl` command line: thin commands over the core; errors mapped to exit codes here.

Commands are registered lazily: a run of `amlctl validate` builds (and imports) only that
command, not the other fifteen, which keeps startup close to the cost of the libraries.
"""

from __future__ import annotations

import atexit
import gc
import importlib
import sys
import types
from importlib.machinery import ModuleSpec
from typing import Any

import typer

from amlctl.cli.options import first_command, global_options, hoist_global_options

# name -> (module, function) of each command, in the order `--help` lists them
COMMANDS: dict[str, tuple[str, str]] = {
    "validate": ("amlctl.cli.manifest_cmds", "validate"),
    "render": ("amlctl.cli.manifest_cmds", "render"),
    "graph": ("amlctl.cli.manifest_cmds", "graph"),
    "schema": ("amlctl.cli.manifest_cmds", "schema"),
    "plan": ("amlctl.cli.engine_cmds", "plan"),
    "apply": ("amlctl.cli.engine_cmds", "apply"),
    "destroy": ("amlctl.cli.engine_cmds", "destroy"),
    "show": ("amlctl.cli.engine_cmds", "show"),
    "status": ("amlctl.cli.engine_cmds", "status"),
    "import": ("amlctl.cli.engine_cmds", "import_"),
    "force-unlock": ("amlctl.cli.engine_cmds", "force_unlock"),
    "runs": ("amlctl.cli.runs_cmds", "runs"),
    "logs": ("amlctl.cli.runs_cmds", "logs"),
    "cancel": ("amlctl.cli.runs_cmds", "cancel"),
    "metrics": ("amlctl.cli.metrics_cmds", "metrics"),
    "watch": ("amlctl.cli.metrics_cmds", "watch"),
}
# name -> module holding a sub-app `app` (a command group)
GROUPS: dict[str, str] = {
    "convert": "amlctl.cli.convert_cmd",
    "state": "amlctl.cli.state_cmds",
    "local": "amlctl.cli.local_cmds",
}


def build_app(only: str | None = None) -> typer.Typer:
    """The typer app with every command, or with just `only` when that names one."""
    app = typer.Typer(
        name="amlctl",
        help="Declarative config-as-code for Azure Machine Learning: plan, apply, destroy.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(global_options)
    wanted = [only] if only in COMMANDS or only in GROUPS else [*COMMANDS, *GROUPS]
    for name in wanted:
        if name in COMMANDS:
            module, function = COMMANDS[name]
            app.command(name)(getattr(importlib.import_module(module), function))
        else:
            app.add_typer(importlib.import_module(GROUPS[name]).app)
    return app


def __getattr__(name: str) -> Any:
    if name == "app":  # the whole app, for tools that want it (completion, tests)
        return build_app()
    raise AttributeError(name)


# pydantic's plugin finder: the module pydantic imports the first time it builds a validator.
PYDANTIC_PLUGIN_LOADER = "pydantic.plugin._loader"


class _NoPydanticPlugins:
    """Import hook answering pydantic's plugin finder with one that finds none.

    The first validator pydantic builds imports its plugin finder, and that module imports
    importlib.metadata (email, zipfile, csv, socket...): about a tenth of the time `validate`
    takes, before the finder even reads every installed package's entry points. amlctl has
    no use for plugins (observability hooks): typer and the manifest loader already build
    their validators with plugins disabled. Were pydantic to move its finder, this hook would
    just go unused; were it to ask the finder for another name, that name is taken from
    pydantic's own finder (`_real_finder_attribute`). Library users of amlctl (no `main`)
    keep pydantic as it is.
    """

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> ModuleSpec | None:
        """A spec for the plugin finder only; every other import goes on as usual."""
        return ModuleSpec(name, _NoPydanticPlugins) if name == PYDANTIC_PLUGIN_LOADER else None

    @staticmethod
    def create_module(spec: ModuleSpec) -> None:
        """The default module object."""
        return None

    @staticmethod
    def exec_module(module: types.ModuleType) -> None:
        """Fill the module: `get_plugins()`, which finds no plugin."""
        module.get_plugins = _no_plugins  # type: ignore[attr-defined]
        module.__getattr__ = _real_finder_attribute  # type: ignore[method-assign]


def _no_plugins(*_args: Any, **_kwargs: Any) -> tuple[()]:
    return ()


def _real_finder_attribute(name: str) -> Any:
    """A name the stand-in lacks (a newer pydantic asking for more): pydantic's own finder
    is loaded from its file, under a private name, and asked for it. Dunder names (the
    import system asks for `__path__`) are not forwarded: the stand-in is a plain module."""
    if name.startswith("__"):
        raise AttributeError(name)
    import importlib.util

    import pydantic.plugin

    path = f"{pydantic.plugin.__path__[0]}/_loader.py"
    spec = importlib.util.spec_from_file_location("amlctl._pydantic_plugin_loader", path)
    if spec is None or spec.loader is None:
        raise AttributeError(name)
    real = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(real)
    return getattr(real, name)


def _no_pydantic_plugins() -> None:
    """Install the hook, before anything loads pydantic (see _NoPydanticPlugins)."""
    if PYDANTIC_PLUGIN_LOADER not in sys.modules and _NoPydanticPlugins not in sys.meta_path:
        sys.meta_path.insert(0, _NoPydanticPlugins)  # type: ignore[arg-type]


# The cyclic garbage collector at start-up: importing the libraries, building the manifest's
# validators, loading it and opening the state allocate a few hundred thousand objects that
# live until the process ends, and the collector scanned them again and again (about a tenth
# of a no-op plan's own time), then once more as the interpreter exits. Start-up garbage has
# almost no cycles (reference counting frees it), so `main` pauses the collector for these
# commands until their real work starts (`resume_gc`: when the engine context is open; for
# apply and destroy, once the plan has changes; waiting on runs): what start-up built is then
# frozen (never scanned again) and the collector runs as usual. A plan never resumes: it
# builds no garbage in cycles (measured: the same few hundred objects, of start-up, after a
# plan of 10,000 files or 1,000 resources). Nor do the manifest-only commands: they are
# short, and the manifest's budgets bound what they build. The other commands (following
# logs, watching runs) are not paused. At exit all is frozen too, which spares the
# interpreter's last full collection: it could only run finalizers of garbage in cycles, and
# the process ends anyway.
GC_PAUSED = frozenset({"plan", "apply", "destroy", "show", "status", "import", "force-unlock",
                       "validate", "render", "graph", "schema"})
_gc_pause = {"paused": False, "frozen": False}


def resume_gc() -> None:
    """End `main`'s start-up pause of the garbage collector (see GC_PAUSED): freeze what
    start-up built, collect as usual from here. Does nothing when no pause is on."""
    if _gc_pause["paused"]:
        _gc_pause.update(paused=False, frozen=True)
        gc.freeze()
        gc.enable()


def _pause_gc(command: str | None) -> None:
    if command in GC_PAUSED and gc.isenabled():
        gc.disable()
        _gc_pause["paused"] = True
    atexit.unregister(gc.freeze)  # registered once, however often main runs in one process
    atexit.register(gc.freeze)


def _end_gc_pause() -> None:
    """Give a program that called `main` its collector back as it was."""
    if _gc_pause["paused"]:
        # Everything the paused command built is still "young": the first collection after
        # `enable` would scan it all. Freezing then unfreezing files it with the old objects.
        gc.freeze()
    if _gc_pause["paused"] or _gc_pause["frozen"]:
        gc.unfreeze()
    if _gc_pause["paused"]:
        gc.enable()
    _gc_pause.update(paused=False, frozen=False)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map domain errors to exit codes (0 ok, 1 error, 2 changes present)."""
    args = list(sys.argv[1:] if argv is None else argv)
    _pause_gc(first_command(args))
    try:
        _run(args)
    finally:
        _end_gc_pause()


def _run(args: list[str]) -> None:
    from amlctl.errors import AmlctlError, ManifestError

    _no_pydantic_plugins()
    command = typer.main.get_command(build_app(first_command(args)))
    try:
        args = hoist_global_options(command, args)
        code = command.main(args=args, prog_name="amlctl", standalone_mode=False)
    except ManifestError as err:
        # one `FILE:LINE:COL: path: message` per line, as editors and CI annotators parse them
        typer.echo(str(err), err=True)
        sys.exit(err.exit_code)
    except AmlctlError as err:
        typer.echo(f"Error: {err}", err=True)
        sys.exit(err.exit_code)
    except typer.Exit as err:
        sys.exit(err.exit_code)
    except typer.Abort:
        typer.echo("Aborted.", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        typer.echo("Interrupted.", err=True)
        sys.exit(130)
    except Exception as err:
        if not hasattr(err, "show"):  # not a command-line parsing error
            from amlctl.statedb import describe_environment_error

            # The machine's state, not a bug: a full disk, a read-only or damaged state file.
            problem = describe_environment_error(err)
            if problem is None:
                raise  # a real bug
            typer.echo(f"Error: {problem}", err=True)
            sys.exit(1)
        err.show()
        sys.exit(1)  # a bad command line is an error (exit 1); 2 means "changes present"
    sys.exit(code if isinstance(code, int) else 0)
