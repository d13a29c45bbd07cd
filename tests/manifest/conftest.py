"""Fixtures for manifest tests: a clean environment and a folder a manifest can point into."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from amlctl.cli import main


@dataclass(frozen=True)
class CliResult:
    """What one in-process `amlctl` invocation did."""

    code: int
    stdout: str
    stderr: str


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A current folder with the local paths the test manifests refer to."""
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('training')\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "digits.csv").write_text("0,1,2\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def amlctl(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `amlctl ARGS...` in this process; returns its exit code and output."""

    def run(*args: str) -> CliResult:
        capsys.readouterr()
        try:
            main(list(args))
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        else:
            code = 0
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run

