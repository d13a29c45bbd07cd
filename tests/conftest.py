"""Fixtures for every test."""

from __future__ import annotations

import os

import pytest

# Shared test modules imported by several test files: without this their failed asserts say only
# "AssertionError", not the values compared.
pytest.register_assert_rewrite("provider_contract", "golden")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", default=False,
        help="rewrite the golden files the selected tests compare (tests/convert/golden/, "
             "tests/engine/scenarios/*/) from the current output; review the diff after")


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    """True when the run was started with --update-golden (see tests/golden.py)."""
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AMLCTL_* setting of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("AMLCTL_"):
            monkeypatch.delenv(name)
