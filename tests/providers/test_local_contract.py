"""The provider contract on the local backend (real SQLite and folders)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from provider_contract import STACK, ProviderContract

from amlctl.providers.local.provider import LocalProvider

WORKSPACE = {"name": "contract-ws", "subscription_id": "0000", "resource_group": "rg",
             "location": "westeurope", "tags": {}}


@pytest.fixture
def provider(tmp_path: Path) -> Iterator[LocalProvider]:
    local = LocalProvider(WORKSPACE, STACK, tmp_path / ".amlctl")
    local.create("workspace", WORKSPACE, {})
    yield local
    local.close()


class TestLocalContract(ProviderContract):
    """Every contract test, on the local backend."""
