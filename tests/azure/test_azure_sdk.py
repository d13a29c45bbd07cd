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


def run_python(code: str, home: Path | None = None) -> subprocess.CompletedProcess[str]:
    """`code` in a fresh interpreter; the SDK itself needs a HOME (`home`) to import."""
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120, check=False,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                               **({"HOME": str(home)} if home else {})})


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


def test_sdk_warnings_show_only_with_debug_logging_and_ours_always(tmp_path: Path) -> None:
    """The SDK's Python warnings (the resource group note `Workspace.create` gives through
    the SDK's own `give_warning`) are log records of the quiet `azureml` logger: off stderr,
    shown at DEBUG (`-vv`); a warning raised outside the SDK is shown as before."""
    script = (
        "import logging, warnings\n"
        "from amlctl.providers.azure import sdk\n"
        "sdk.load()\n"
        "from azureml._base_sdk_common.common import give_warning\n"
        "give_warning('AzureML SDK is creating a resource group=quiet-rg')\n"
        "warnings.warn('a warning of our own', UserWarning)\n"
        "logging.basicConfig(level=logging.DEBUG, format='%(levelname)s %(name)s: %(message)s')\n"
        "logging.getLogger('azureml').setLevel(logging.NOTSET)  # as -vv leaves it\n"
        "give_warning('AzureML SDK is creating a resource group=loud-rg')\n")
    done = run_python(script, home=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "a warning of our own" in done.stderr
    assert "quiet-rg" not in done.stderr, done.stderr
    assert ("WARNING azureml.warnings: AzureML SDK is creating a resource group=loud-rg"
            in done.stderr), done.stderr
