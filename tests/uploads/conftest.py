"""Fixtures of the upload tests (helpers live in upload_helpers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from upload_helpers import Env


@pytest.fixture
def env(tmp_path: Path) -> Env:
    """An Env whose hash cache trusts entries at once (racy window 0); tests of the racy
    window make their own."""
    return Env(tmp_path)
