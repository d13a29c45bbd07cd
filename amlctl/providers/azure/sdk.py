"""The one door to azureml-sdk: imported on first use, its console output turned into logging.

Nothing in this package imports azureml at module level, so `amlctl --help`, `validate` and the
local backend never pay for it (about 0.7 s and 2,000 modules). `azureml.train.dnn` is never
imported (7-8 s); TensorFlow runs use `TensorflowConfiguration` from `azureml.core.runconfig`.
"""

from __future__ import annotations

import io
import logging
import os
import sys
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO

from amlctl.errors import ProviderError

INSTALL_HINT = "pip install 'amlctl[azure]'"
log = logging.getLogger("amlctl.azure.sdk")


class AzureSdkMissing(ProviderError):
    """The azure extra is not installed."""


@dataclass(frozen=True)
class Sdk:
    """The SDK names the backend uses, resolved once."""

    Workspace: Any
    ComputeTarget: Any
    AmlCompute: Any
    Datastore: Any
    Experiment: Any
    Run: Any
    ScriptRunConfig: Any
    RunConfiguration: Any
    Environment: Any
    CondaDependencies: Any
    TensorflowConfiguration: Any
    MpiConfiguration: Any
    ServicePrincipalAuthentication: Any
    MsiAuthentication: Any
    AzureCliAuthentication: Any
    TokenAuthentication: Any
    ComputeTargetException: Any
    version: str


_lock = threading.Lock()
_sdk: Sdk | None = None


def load() -> Sdk:
    """Import azureml-core (once) and return the names we use.

    Raises AzureSdkMissing with the install command when the extra is absent.
    """
    global _sdk
    with _lock:
        if _sdk is not None:
            return _sdk
        # The SDK retries 429s itself starting at 32 s (then 64, 128); our retry layer owns the
        # policy instead, so the SDK makes one attempt unless the user asked otherwise.
        os.environ.setdefault("AZUREML_DEFAULT_RETRIES", "0")
        try:
            # the SDK warns about its own deprecated pieces at import: not the user's concern
            with captured_output(), warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                from azureml._base_sdk_common import __version__ as version
                from azureml.core import (
                    ComputeTarget,
                    Datastore,
                    Environment,
                    Experiment,
                    Run,
                    RunConfiguration,
                    ScriptRunConfig,
                    Workspace,
                )
                from azureml.core.authentication import (
                    AzureCliAuthentication,
                    MsiAuthentication,
                    ServicePrincipalAuthentication,
                    TokenAuthentication,
                )
                from azureml.core.compute import AmlCompute
                from azureml.core.conda_dependencies import CondaDependencies
                from azureml.core.runconfig import MpiConfiguration, TensorflowConfiguration
                from azureml.exceptions import ComputeTargetException
        except ImportError as e:
            raise AzureSdkMissing(
                f"The azure backend needs azureml-sdk, which is not installed ({e.name or e}). "
                f"Install it with: {INSTALL_HINT}") from e
        _sdk = Sdk(Workspace, ComputeTarget, AmlCompute, Datastore, Experiment, Run,
                   ScriptRunConfig, RunConfiguration, Environment, CondaDependencies,
                   TensorflowConfiguration, MpiConfiguration, ServicePrincipalAuthentication,
                   MsiAuthentication, AzureCliAuthentication, TokenAuthentication,
                   ComputeTargetException, str(version))
        return _sdk


class _ThreadRoutedStdout(io.TextIOBase):
    """Stands in for sys.stdout: threads inside `captured_output()` write to logging, others pass.

    The SDK prints progress with print() and sys.stdout.write(); swapping sys.stdout for the
    whole process (contextlib.redirect_stdout) would also swallow output of unrelated threads.
    """

    def __init__(self, original: TextIO) -> None:
        self.original = original
        self.local = threading.local()

    def capturing(self) -> bool:
        return getattr(self.local, "depth", 0) > 0

    def write(self, s: str) -> int:
        if not self.capturing():
            return self.original.write(s)
        buf = getattr(self.local, "buffer", "") + s
        *lines, rest = buf.split("\n")
        for line in lines:
            if line.strip():
                log.info("%s", line.rstrip())
        self.local.buffer = rest
        return len(s)

    def flush(self) -> None:
        if not self.capturing():
            self.original.flush()

    def isatty(self) -> bool:
        return False if self.capturing() else self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")


_install_lock = threading.Lock()


def _router() -> _ThreadRoutedStdout:
    with _install_lock:
        current = sys.stdout
        if not isinstance(current, _ThreadRoutedStdout):
            current = _ThreadRoutedStdout(current)
            sys.stdout = current
        return current


@contextmanager
def captured_output() -> Iterator[None]:
    """Send what the SDK prints on this thread to the `amlctl.azure.sdk` logger (INFO)."""
    router = _router()
    router.local.depth = getattr(router.local, "depth", 0) + 1
    try:
        yield
    finally:
        router.local.depth -= 1
        if router.local.depth == 0:
            rest = getattr(router.local, "buffer", "")
            if rest.strip():
                log.info("%s", rest.rstrip())
            router.local.buffer = ""


def blob_module() -> Any:
    """The blob storage client azureml-core vendors (a v12 azure-storage-blob)."""
    load()
    from azureml._vendor.azure_storage import blob

    return blob
