"""Fixtures for every test."""

from __future__ import annotations

import os
from collections.abc import Generator

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


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]
                              ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """A skip fails the test: CI has every extra and tool, so a skip only hides a regression
    (a broken import, a missing dependency). A test that cannot run fails, saying how to fix it."""
    report = yield
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped, but this suite never skips: {reason}".replace(
            ": Skipped: ", ": ", 1)
    return report
