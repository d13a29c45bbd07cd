"""The `amlctl` command line: thin commands over the core; errors mapped to exit codes here."""

from __future__ import annotations

import sys

import typer

from amlctl.cli import convert_cmd, engine_cmds, local_cmds, manifest_cmds, runs_cmds, state_cmds
from amlctl.cli.options import global_options

app = typer.Typer(
    name="amlctl",
    help="Declarative config-as-code for Azure Machine Learning: plan, apply, destroy.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.callback()(global_options)
manifest_cmds.register(app)
engine_cmds.register(app)
runs_cmds.register(app)
app.add_typer(convert_cmd.app)
app.add_typer(state_cmds.app)
local_cmds.register(app)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; map domain errors to exit codes (0 ok, 1 error, 2 changes present)."""
    from amlctl.errors import AmlctlError, ManifestError

    try:
        code = app(args=argv, prog_name="amlctl", standalone_mode=False)
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
