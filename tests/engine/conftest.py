"""Fixtures for engine tests: a clean environment, a manifest folder, `amlctl` in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from enginekit import Cli, in_process, write_basic


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder: a manifest folder whose state lives in `.amlctl/` beside it."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def basic_project(project: Path) -> Path:
    """`project` holding the basic manifest as amlctl.yaml and its small data folder."""
    write_basic(project)
    return project


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run `amlctl ARGS...` in-process and capture its output (see enginekit.in_process)."""
    return in_process(capsys, monkeypatch)
