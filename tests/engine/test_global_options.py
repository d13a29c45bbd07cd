"""Global options work before and after the command, as in az and kubectl."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import typer
from enginekit import Cli, write_basic

from amlctl.cli import app
from amlctl.cli.options import hoist_global_options


def hoist(*argv: str) -> list[str]:
    return hoist_global_options(typer.main.get_command(app), list(argv))


def test_global_options_after_the_command_move_before_it() -> None:
    assert hoist("plan", "--backend", "azure", "--out", "p.bin", "-vv") == [
        "--backend", "azure", "-vv", "plan", "--out", "p.bin"]
    assert hoist("render", "--var=a=1", "--var-file", "v.yaml", "--no-color") == [
        "--var=a=1", "--var-file", "v.yaml", "--no-color", "render"]


def test_options_before_the_command_and_nested_commands() -> None:
    assert hoist("--var", "a=1", "apply", "--var", "a=2") == [
        "--var", "a=1", "--var", "a=2", "apply"]  # the later one wins, as typed
    assert hoist("convert", "batchai", "--job", "j.json", "--backend", "local") == [
        "--backend", "local", "convert", "batchai", "--job", "j.json"]


def test_values_of_the_commands_own_options_and_the_rest_after_dashes_stay() -> None:
    # `--out` takes a value: `--var` is the file name here, not the global option
    assert hoist("plan", "--out", "--var", "--target", "-v") == [
        "plan", "--out", "--var", "--target", "-v"]
    assert hoist("logs", "run.x", "--", "--backend", "azure") == [
        "logs", "run.x", "--", "--backend", "azure"]
    assert hoist("no-such-command", "--backend", "azure") == [
        "no-such-command", "--backend", "azure"]


def test_a_global_option_without_its_value_is_an_error(basic_project: Path, cli: Cli) -> None:
    result = cli("plan", "--backend")
    assert result.code == 1
    assert "--backend needs a value" in result.stderr


def test_var_after_the_command_renders(project: Path, cli: Cli) -> None:
    write_basic(project)
    manifest = project / "amlctl.yaml"
    manifest.write_text("vars: {nodes: 2}\n" + manifest.read_text().replace(
        "max_nodes: 2\n", "max_nodes: '{{ vars.nodes }}'\n", 1))
    before = cli("--var", "nodes=7", "render")
    after = cli("render", "--var", "nodes=7")
    assert before.code == after.code == 0, before.stderr + after.stderr
    assert "max_nodes: 7" in after.stdout
    assert before.stdout == after.stdout


def test_backend_after_the_command_is_checked(basic_project: Path, cli: Cli) -> None:
    result = cli("plan", "--backend", "nowhere")
    assert result.code == 1
    assert "--backend 'nowhere': expected local or azure" in result.stderr


def test_verbose_after_the_command_raises_the_log_level(basic_project: Path, cli: Cli,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    seen: list[int] = []
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: seen.append(kw["level"]))
    assert cli("validate", "-vv").code == 0
    assert cli("validate", "--verbose").code == 0
    assert seen == [logging.DEBUG, logging.INFO]


def test_environment_variables_still_apply(basic_project: Path, cli: Cli,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AMLCTL_BACKEND", "nowhere")
    assert "--backend 'nowhere'" in cli("plan").stderr
