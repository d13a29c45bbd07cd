"""Real MLflow writes the stores these tests read: it must be installed (the demo extra)."""

from __future__ import annotations

import importlib.util

import pytest


@pytest.fixture(scope="session", autouse=True)
def mlflow_installed() -> None:
    if importlib.util.find_spec("mlflow") is None:
        pytest.fail("mlflow-skinny is not installed; `make test` installs it with the demo "
                    "extra (pip install -e '.[demo]')", pytrace=False)

