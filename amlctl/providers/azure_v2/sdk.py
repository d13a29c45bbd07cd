"""The one door to azure-ai-ml (SDK v2): imported on first use, never at module level.

`import azure.ai.ml` costs about 1.6 s, so `--help`, `validate` and the other backends must
never reach it. The SDK's own HTTP retries are turned off (`retry_total=0`): the backend's
retry layer (amlctl.providers.azure.retry) owns the one bounded policy for both SDKs.
"""

from __future__ import annotations

import io
import logging
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr
from typing import Any

from amlctl.errors import ProviderError

INSTALL_HINT = "pip install 'amlctl[azure-v2]'"
log = logging.getLogger("amlctl.azure_v2.sdk")

_lock = threading.Lock()
_loaded: Any = None


class AzureV2SdkMissing(ProviderError):
    """The azure-v2 extra is not installed."""


def load() -> Any:
    """`azure.ai.ml` (imported once); AzureV2SdkMissing names the extra when it is absent."""
    global _loaded
    with _lock:
        if _loaded is None:
            try:
                # its schemas warn about marshmallow's own API at import: not the user's concern
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    import azure.ai.ml as ml
                    import azure.ai.ml.entities  # the names the backend uses
                    import azure.identity  # noqa: F401 - the credentials (auth.py)
            except ImportError as e:
                raise AzureV2SdkMissing(
                    "The azure-v2 backend needs azure-ai-ml and azure-identity, which are not "
                    f"installed ({e.name or e}). Install them with: {INSTALL_HINT}") from e
            _loaded = ml
    quiet_loggers()
    return _loaded


def quiet_loggers() -> None:
    """Keep the SDK's own console output out of amlctl's: some of its modules attach a
    stderr handler at INFO (activity telemetry, "experimental class" notes, an ERROR line for
    every 404 amlctl expects). Their records show with `amlctl -vv` only, as v1's do. Called again
    after each call that may import more SDK modules (they create loggers on import)."""
    debug = logging.getLogger().getEffectiveLevel() <= logging.DEBUG  # `amlctl -vv`
    logging.getLogger("azure.ai.ml").setLevel(logging.NOTSET if debug else logging.CRITICAL)
    logging.getLogger("azure.identity").setLevel(logging.WARNING)
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        # its children only: they inherit the level set above (resetting it too would let
        # every record through to amlctl's stderr handler)
        if not name.startswith("azure.ai.ml.") or not isinstance(logger, logging.Logger):
            continue
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler):
                logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


@contextmanager
def stderr_to_log() -> Iterator[None]:
    """What the SDK prints to stderr while uploading a snapshot (progress, colour resets),
    logged at INFO instead. Process-wide for the duration: submissions run one at a time."""
    buffer = io.StringIO()
    try:
        with redirect_stderr(buffer):
            yield
    finally:
        quiet_loggers()
        for line in buffer.getvalue().splitlines():
            if line.strip():
                log.info("%s", line.rstrip())


def ml_client(credential: Any, workspace: dict[str, Any], cloud: str,
              workspace_scoped: bool = True) -> Any:
    """An MLClient for the manifest's workspace, with the cloud given explicitly (without it the
    SDK may fetch cloud metadata from the internet)."""
    ml = load()
    return ml.MLClient(credential, subscription_id=workspace["subscription_id"],
                       resource_group_name=workspace["resource_group"],
                       workspace_name=workspace["name"] if workspace_scoped else None,
                       cloud=cloud, retry_total=0,
                       # with progress off the SDK never reads its upload workers' results, so a
                       # failed snapshot upload waits forever; the bars go to the log
                       # (stderr_to_log)
                       show_progress=True)


def is_not_found(err: BaseException) -> bool:
    """True for the SDK's 404 (ResourceNotFoundError, or an HttpResponseError with 404)."""
    from amlctl.providers.azure.retry import status_of

    return type(err).__name__ == "ResourceNotFoundError" or status_of(err) == 404
