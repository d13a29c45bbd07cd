"""Fixtures for every test."""

from __future__ import annotations

import os

import pytest

# Shared test modules imported by several test files: without this their failed asserts say only
# "AssertionError", not the values compared.
pytest.register_assert_rewrite("provider_contract")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AMLCTL_* setting of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("AMLCTL_"):
            monkeypatch.delenv(name)
