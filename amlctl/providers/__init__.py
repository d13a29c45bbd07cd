"""Backends behind one interface, loaded lazily by name (the engine imports none of them).

`BACKENDS` is the one place a backend is registered: its name (what the manifest's `backend:`,
`--backend` and AMLCTL_BACKEND say) and where its Provider class lives. The manifest model,
its JSON Schema and the CLI read their names from it when they are used, so a backend added
here, or at run time by an embedding program, is known everywhere at once.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from amlctl.errors import UsageError
from amlctl.providers.base import Provider

# name -> "module:ProviderClass"
BACKENDS: dict[str, str] = {
    "local": "amlctl.providers.local.provider:LocalProvider",
    "azure": "amlctl.providers.azure.provider:AzureProvider",
    "azure-v2": "amlctl.providers.azure_v2.provider:AzureV2Provider",
}


def __getattr__(name: str) -> Any:
    # BACKEND_NAMES is computed on each use, so a backend registered after import counts
    if name == "BACKEND_NAMES":
        return tuple(BACKENDS)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_provider(backend: str, workspace: dict[str, Any], stack: str, state_dir: Path
                 ) -> Provider:
    """An instance of the named backend for one workspace of one stack."""
    target = BACKENDS.get(backend)
    if target is None:
        raise UsageError(f"unknown backend {backend!r}; expected one of {sorted(BACKENDS)}")
    module_name, _, class_name = target.partition(":")
    module = importlib.import_module(module_name)
    provider_class: type[Provider] = getattr(module, class_name)
    return provider_class(workspace=workspace, stack=stack, state_dir=state_dir)
