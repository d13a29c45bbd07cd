"""Helpers the azure-v2 tests share (a module of its own: `conftest` names another module
when tests/azure runs in the same session)."""

from __future__ import annotations

import time
from typing import Any

from fake_service import TEST_SUBSCRIPTION, make_token

SUBSCRIPTION = TEST_SUBSCRIPTION


class FakeTokenCredential:
    """An azure-core TokenCredential minting tokens locally (the fake reads, never trusts)."""

    def get_token(self, *scopes: str, **_kwargs: Any) -> Any:
        from azure.core.credentials import AccessToken

        scope = scopes[0] if scopes else "https://management.azure.com/.default"
        audience = scope[: -len(".default")] if scope.endswith("/.default") else scope
        return AccessToken(make_token(audience), int(time.time()) + 3600)
