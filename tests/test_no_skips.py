"""The suite never skips: a skip fails the run, and a missing extra fails naming how to install it.

Each case runs pytest in a subprocess on a small test folder (or one real test with the azure SDK
hidden), with this suite's tests/conftest.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS.parent


def _pytest(cwd: Path, *args: str, path: tuple[Path, ...] = ()
            ) -> subprocess.CompletedProcess[str]:
    pythonpath = [*map(str, path), str(PROJECT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "--rootdir", str(cwd), *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_a_skip_fails_the_run(tmp_path: Path) -> None:
    shutil.copyfile(TESTS / "conftest.py", tmp_path / "conftest.py")
    (tmp_path / "test_x.py").write_text(
        "import pytest\n\n"
        "def test_skips():\n    pytest.skip('no widget here')\n\n"
        "@pytest.mark.skipif(True, reason='never on Tuesdays')\n"
        "def test_skipif():\n    pass\n\n"
        "def test_importorskip():\n    pytest.importorskip('widget_lib_not_installed')\n\n"
        "def test_passes():\n    pass\n")
    run = _pytest(tmp_path)
    assert run.returncode == 1, run.stdout + run.stderr
    # a skip in a test fails it; a skip mark fails its setup (an error)
    assert "2 failed, 1 passed, 1 error" in run.stdout, run.stdout
    assert "skipped" not in run.stdout.splitlines()[-1]
    for reason in ("no widget here", "never on Tuesdays", "could not import 'widget_lib_not"):
        assert f"this suite never skips: {reason}" in run.stdout, run.stdout


def test_missing_azure_sdk_fails_naming_the_extra(tmp_path: Path) -> None:
    hidden = tmp_path / "hide"
    (hidden / "azureml").mkdir(parents=True)  # shadows the installed SDK, as if it were absent
    (hidden / "azureml" / "__init__.py").write_text("raise ImportError('azureml hidden')\n")
    run = _pytest(PROJECT, "tests/azure/test_azure_provider.py::test_create_is_idempotent",
                  path=(hidden,))
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 error" in run.stdout and "skipped" not in run.stdout, run.stdout
    assert "pip install -e '.[azure]'" in run.stdout, run.stdout


def test_missing_azurite_fails_naming_npm_ci(tmp_path: Path) -> None:
    """Without Node.js on PATH the azure tests fail, saying how to get Azurite."""
    pythonpath = [str(PROJECT), *filter(None, [os.environ.get("PYTHONPATH")])]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(pythonpath),
           "PATH": str(Path(sys.executable).parent)}  # python, but no node
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/azure/test_azure_provider.py::test_create_is_idempotent"],
                         cwd=PROJECT, env=env, capture_output=True, text=True, timeout=300,
                         check=False)
    assert run.returncode == 1, run.stdout + run.stderr
    assert "1 error" in run.stdout and "skipped" not in run.stdout, run.stdout
    assert "Azurite is needed by the azure backend tests" in run.stdout, run.stdout
    assert "run `npm ci`" in run.stdout, run.stdout
