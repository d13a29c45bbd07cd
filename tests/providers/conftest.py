"""Fixtures for the local backend's end-to-end tests: a manifest folder and `amlctl`
in-process (the engine tests' helpers)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "engine"))
from enginekit import Cli, in_process, write_basic


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder: the basic manifest, its data, state in `.amlctl/` beside it."""
    monkeypatch.chdir(tmp_path)
    write_basic(tmp_path)
    return tmp_path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Cli:
    """Run `amlctl ARGS...` in-process and capture its output."""
    return in_process(capsys, monkeypatch)
