"""Backends behind one interface, loaded lazily by name (the engine imports none of them)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlctl.errors import UsageError

if TYPE_CHECKING:  # the manifest's models import this module for BACKEND_NAMES alone
    from amlctl.providers.base import Provider

_BACKENDS = {
    "local": "amlctl.providers.local.provider:LocalProvider",
    "azure": "amlctl.providers.azure.provider:AzureProvider",
    "azure-v2": "amlctl.providers.azure_v2.provider:AzureV2Provider",
}
# The one list of backend names: the manifest's `backend:` and the CLI's --backend use it.
BACKEND_NAMES = tuple(_BACKENDS)


def get_provider(backend: str, workspace: dict[str, Any], stack: str, state_dir: Path
                 ) -> Provider:
    """An instance of the named backend for one workspace of one stack."""
    target = _BACKENDS.get(backend)
    if target is None:
        raise UsageError(f"unknown backend {backend!r}; expected one of {sorted(_BACKENDS)}")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    provider_class: type[Provider] = getattr(module, class_name)
    return provider_class(workspace=workspace, stack=stack, state_dir=state_dir)
