"""The provider contract on the azure-v2 backend: the real azure-ai-ml client against the fake
Azure edge (only the network is replaced; see fake_v2.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SUBSCRIPTION, FakeTokenCredential
from fake_v2 import FakeV2Azure
from provider_contract import STACK, ProviderContract

from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.azure_v2.provider import AzureV2Provider
from amlctl.providers.base import OWNER_TAG

WORKSPACE = {"name": "contract-ws", "subscription_id": SUBSCRIPTION,
             "resource_group": "contract-rg", "location": "westeurope",
             "create_resource_group": False, "tags": {}, "prevent_destroy": False}


@pytest.fixture
def provider(fake: FakeV2Azure, credential: FakeTokenCredential, tmp_path: Path
             ) -> AzureV2Provider:
    fake.add_workspace("contract-rg", "contract-ws", tags={OWNER_TAG: STACK})
    return AzureV2Provider(WORKSPACE, STACK, tmp_path, credential=credential, cloud="AzureCloud",
                           policy=RetryPolicy(attempts=4, sleep=lambda _s: None),
                           compute_settings=ComputeSettings(sleep=lambda _s: None))


class TestAzureV2Contract(ProviderContract):
    """Every contract test, on the azure-v2 backend."""
