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
from collections.abc import Callable, Iterator
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
            _route_sdk_warnings()  # again: a catch_warnings block may have restored the hook
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
        _single_attempt_rest_clients()
        _quiet_sdk_loggers()
        _route_sdk_warnings()
        _sdk = Sdk(Workspace, ComputeTarget, AmlCompute, Datastore, Experiment, Run,
                   ScriptRunConfig, RunConfiguration, Environment, CondaDependencies,
                   TensorflowConfiguration, MpiConfiguration, ServicePrincipalAuthentication,
                   MsiAuthentication, AzureCliAuthentication, TokenAuthentication,
                   ComputeTargetException, str(version))
        return _sdk


def _quiet_sdk_loggers() -> None:
    """Keep the SDK's own log lines (`get_workspace error using ...` for a workspace that does
    not exist yet, deprecation notes) off the user's terminal; amlctl reports failures itself.
    They still show with -vv (DEBUG)."""
    sdk_logger = logging.getLogger("azureml")
    if sdk_logger.level == logging.NOTSET and logging.getLogger().getEffectiveLevel() > \
            logging.DEBUG:
        sdk_logger.setLevel(logging.CRITICAL)


def _sdk_dirs() -> tuple[str, ...]:
    import azureml

    return tuple(os.path.join(os.path.abspath(p), "") for p in azureml.__path__)


def _route_sdk_warnings() -> None:
    """Python warnings the SDK's own code raises (`UserWarning: The resource group doesn't
    exist ... AzureML SDK is creating a resource group`) go to the `azureml.warnings` logger
    with its other records: off stderr unless -vv. Warnings from anywhere else (amlctl's own,
    the user's) are shown as before."""
    shown = warnings.showwarning
    if getattr(shown, "routes_sdk_warnings", False):
        return
    sdk_dirs = _sdk_dirs()

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: TextIO | None = None, line: str | None = None) -> None:
        if os.path.abspath(filename).startswith(sdk_dirs):
            logging.getLogger("azureml.warnings").warning("%s", message)
        else:
            shown(message, category, filename, lineno, file, line)

    show.routes_sdk_warnings = True  # type: ignore[attr-defined]
    warnings.showwarning = show


def _single_attempt_rest_clients() -> None:
    """Make the SDK's REST clients (msrest: run history, artifacts, datastores) try once.

    Each of them retries 5xx and dropped connections itself, twice over: urllib3 (3 retries,
    POST and PATCH included, so a create could be repeated) and the SDK's ClientBase loop
    (3 more per urllib3 round). Stacked under amlctl's own policy that made one failed call
    take minutes. amlctl's retry layer is the one policy, and it never repeats a create blindly.
    """
    from msrest.universal_http.requests import ClientRetryPolicy

    if getattr(ClientRetryPolicy, "_amlctl_single_attempt", False):
        return
    original = ClientRetryPolicy.__init__

    def single_attempt(self: Any) -> None:
        original(self)
        self.policy.total = self.policy.connect = self.policy.read = 0

    ClientRetryPolicy.__init__ = single_attempt  # type: ignore[method-assign]
    ClientRetryPolicy._amlctl_single_attempt = True  # type: ignore[attr-defined]


def state_blob_retry() -> Any:
    """The one retry policy of state blob requests: 2 more tries about 1 s apart (0.5 to
    1.5 s) after a 408, a 5xx or a dropped connection, instead of the blob library's default
    3 tries 15, 18 and 24 s apart. A retried conditional write that had landed gets 412; see
    BlobState._write."""
    return blob_module().LinearRetry(backoff=1, retry_total=2, random_jitter_range=0.5)


def container_client(datastore: Any, account_key: str | None = None,
                     sas_token: str | None = None, retry_policy: Any = None) -> Any:
    """A client of a blob datastore's container that tries each request once.

    The SDK's own `blob_service` retries 3 times with 15 s, 18 s, 24 s waits (and up to 10
    times on connection errors); under amlctl's retry layer that stacked into minutes for a
    wrong key or an unreachable account. amlctl's bounded policy is the only one.
    `account_key` / `sas_token`, when given, replace the registered credential (the
    manifest's, newer than the registration when a key was rotated). `retry_policy`, when
    given, is the client's only retry policy instead of none (the state blob's).
    """
    from azureml._vendor.azure_storage.blob import BlobServiceClient

    credential: Any
    if sas_token:
        credential = sas_token
    elif account_key:
        credential = {"account_name": datastore.account_name, "account_key": account_key}
    elif datastore.sas_token:
        credential = datastore.sas_token
    elif datastore.account_key:
        credential = {"account_name": datastore.account_name,
                      "account_key": datastore.account_key}
    else:
        credential = None
    retries: dict[str, Any] = ({"retry_policy": retry_policy} if retry_policy is not None
                               else {"retry_total": 0})
    service = BlobServiceClient(account_url=datastore.blob_service.url, credential=credential,
                                **retries)
    return service.get_container_client(datastore.container_name)


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
                self.emit(line.rstrip())
        self.local.buffer = rest
        return len(s)

    def emit(self, line: str) -> None:
        sink = getattr(self.local, "sink", None)
        if sink is not None:
            sink(line)
        else:
            log.info("%s", line)

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
def captured_output(sink: Callable[[str], None] | None = None) -> Iterator[None]:
    """Send what the SDK prints on this thread to the `amlctl.azure.sdk` logger (INFO), or
    line by line to `sink` when one is given."""
    router = _router()
    router.local.depth = getattr(router.local, "depth", 0) + 1
    outer_sink = getattr(router.local, "sink", None)
    if sink is not None:
        router.local.sink = sink
    try:
        yield
    finally:
        router.local.depth -= 1
        rest = getattr(router.local, "buffer", "")
        if rest.strip() and (router.local.depth == 0 or sink is not None):
            router.emit(rest.rstrip())
            router.local.buffer = ""
        router.local.sink = outer_sink


def blob_module() -> Any:
    """The blob storage client azureml-core vendors (a v12 azure-storage-blob)."""
    load()
    from azureml._vendor.azure_storage import blob

    return blob
