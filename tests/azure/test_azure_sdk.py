"""The door to azureml-sdk: lazy import, a clear error without it, its stdout captured.

These need no fake service; the first two run in a fresh interpreter so they see a process
that has not imported anything yet.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from amlctl.providers.azure import sdk

ROOT = Path(__file__).resolve().parents[2]


def run_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})


def test_importing_the_backend_does_not_import_the_sdk() -> None:
    """The provider module and its helpers load without azureml (help, validate, local)."""
    done = run_python(
        "import sys\n"
        "import amlctl.providers.azure.provider, amlctl.providers.azure.runs\n"
        "import amlctl.providers.azure.auth, amlctl.providers.azure.computes\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'azureml'))\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_missing_sdk_says_how_to_install_it() -> None:
    """Without azureml-sdk: a domain error naming the extra, no traceback from deep inside."""
    done = run_python(
        "import sys\n"
        "sys.modules['azureml'] = None  # as if it were not installed\n"
        "from amlctl.providers.azure import sdk\n"
        "try:\n"
        "    sdk.load()\n"
        "except sdk.AzureSdkMissing as e:\n"
        "    print(type(e).__mro__[1].__name__, e)\n")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("ProviderError ")
    assert "pip install 'amlctl[azure]'" in done.stdout


def test_sdk_prints_go_to_logging_only_on_the_capturing_thread(
        caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]) -> None:
    """print() inside captured_output() becomes log records; other threads still print."""
    other_done = threading.Event()

    def other() -> None:
        print("from another thread")
        other_done.set()

    with caplog.at_level(logging.INFO, logger="amlctl.azure.sdk"), sdk.captured_output():
        print("Provisioning operation finished, operation \"Succeeded\"")
        sys.stdout.write("Running")
        sys.stdout.write("...\n")
        worker = threading.Thread(target=other)
        worker.start()
        worker.join()
    assert other_done.is_set()
    assert [r.getMessage() for r in caplog.records] == [
        'Provisioning operation finished, operation "Succeeded"', "Running..."]
    assert "from another thread" in capsys.readouterr().out


def test_router_passes_through_outside_capture() -> None:
    """Writes outside a capture reach the original stream unchanged."""
    target = io.StringIO()
    router = sdk._ThreadRoutedStdout(target)
    router.write("plain\n")
    assert target.getvalue() == "plain\n"
