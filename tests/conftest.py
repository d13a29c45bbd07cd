"""Fixtures for every test."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AMLCTL_* setting of the machine running the tests leaks into them."""
    for name in list(os.environ):
        if name.startswith("AMLCTL_"):
            monkeypatch.delenv(name)
