"""`pytest --update-golden` really rewrites the golden files of both suites that have them.

Runs pytest in a subprocess on a copy of tests/ whose golden files were damaged: without the
option the damaged files fail their tests; with it they are rewritten to what the checked-in
files hold, and the checked-in tree is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent
# one case of each suite, with the golden files that case compares
CASES = {
    "convert/test_convert_golden.py::test_golden_manifest_and_report[horovod-tensorflow]":
        ["convert/golden/horovod-tensorflow.yaml", "convert/golden/horovod-tensorflow.md"],
    "engine/test_scenarios.py::test_scenario[secret_added]":
        ["engine/scenarios/secret_added/plan.txt"],
}


def _pytest(copy: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(PROJECT), *filter(None, [os.environ.get("PYTHONPATH")])])}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", str(copy),
         *args, *(str(copy / "tests" / case) for case in CASES)],
        cwd=copy, env=env, capture_output=True, text=True, timeout=300, check=False)


def test_update_golden_rewrites_both_suites(tmp_path: Path) -> None:
    shutil.copytree(TESTS, tmp_path / "tests",
                    ignore=shutil.ignore_patterns("__pycache__", ".pytest_cache"))
    shutil.copyfile(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    goldens = [rel for files in CASES.values() for rel in files]
    original = {rel: (TESTS / rel).read_text(encoding="utf-8") for rel in goldens}
    for rel in goldens:
        (tmp_path / "tests" / rel).write_text("stale\n", encoding="utf-8")

    compared = _pytest(tmp_path)
    assert compared.returncode == 1, compared.stdout + compared.stderr
    assert f"{len(CASES)} failed" in compared.stdout, compared.stdout
    assert "--update-golden" in compared.stdout  # the failure says how to regenerate

    updated = _pytest(tmp_path, "--update-golden")
    assert updated.returncode == 0, updated.stdout + updated.stderr
    assert f"{len(CASES)} passed" in updated.stdout, updated.stdout
    for rel in goldens:
        assert (tmp_path / "tests" / rel).read_text(encoding="utf-8") == original[rel], rel
        assert (TESTS / rel).read_text(encoding="utf-8") == original[rel], rel
