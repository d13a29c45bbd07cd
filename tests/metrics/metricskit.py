"""Helpers for the metrics tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def run_python(code: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`code` in a new interpreter (as a run's task is) with `env` added; fails on error."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    done = subprocess.run([sys.executable, "-c", code], env={**full, **env}, cwd=cwd,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done
