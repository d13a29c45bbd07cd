"""The one door to azure-ai-ml (SDK v2): imported on first use, never at module level.

`import azure.ai.ml` costs about 1.6 s, so `--help`, `validate` and the other backends must
never reach it. The SDK's own HTTP retries are turned off (`retry_total=0`): the backend's
retry layer (amlctl.providers.azure.retry) owns the one bounded policy for both SDKs.
"""

from __future__ import annotations

import logging
import threading
import warnings
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
                    import azure.ai.ml.entities  # noqa: F401 - the names the backend uses
            except ImportError as e:
                raise AzureV2SdkMissing(
                    "The azure-v2 backend needs azure-ai-ml and azure-identity, which are not "
                    f"installed ({e.name or e}). Install them with: {INSTALL_HINT}") from e
            # the SDK logs every request at INFO and warns about preview features
            for name in ("azure.ai.ml", "azure.core.pipeline.policies.http_logging_policy",
                         "azure.identity"):
                logging.getLogger(name).setLevel(logging.WARNING)
            _loaded = ml
        return _loaded


def ml_client(credential: Any, workspace: dict[str, Any], cloud: str,
              workspace_scoped: bool = True) -> Any:
    """An MLClient for the manifest's workspace, with the cloud given explicitly (without it the
    SDK may fetch cloud metadata from the internet)."""
    ml = load()
    return ml.MLClient(credential, subscription_id=workspace["subscription_id"],
                       resource_group_name=workspace["resource_group"],
                       workspace_name=workspace["name"] if workspace_scoped else None,
                       cloud=cloud, retry_total=0, show_progress=False)


def is_not_found(err: BaseException) -> bool:
    """True for the SDK's 404 (ResourceNotFoundError, or an HttpResponseError with 404)."""
    from amlctl.providers.azure.retry import status_of

    return type(err).__name__ == "ResourceNotFoundError" or status_of(err) == 404
