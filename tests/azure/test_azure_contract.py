"""The provider contract on the azure backend: the real azureml SDK against the fake service
(only the network edge is replaced; see fake_service.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fake_service import TEST_SUBSCRIPTION, FakeAzure
from provider_contract import STACK, ProviderContract

from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.base import OWNER_TAG

WORKSPACE = {"name": "contract-ws", "subscription_id": TEST_SUBSCRIPTION,
             "resource_group": "contract-rg", "location": "westeurope",
             "create_resource_group": False, "tags": {}, "prevent_destroy": False}


@pytest.fixture
def provider(fake: FakeAzure, token_auth: Any, tmp_path: Path) -> AzureProvider:
    fake.add_workspace("contract-rg", "contract-ws", tags={OWNER_TAG: STACK})
    return AzureProvider(WORKSPACE, STACK, tmp_path, auth=token_auth, cloud="AzureCloud",
                         policy=RetryPolicy(attempts=4, sleep=lambda _s: None),
                         compute_settings=ComputeSettings(sleep=lambda _s: None))


class TestAzureContract(ProviderContract):
    """Every contract test, on the azure backend."""
