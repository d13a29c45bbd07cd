"""The provider contract on the azure-v2 backend: the real azure-ai-ml client against the fake
Azure edge (only the network is replaced; see fake_v2.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fake_v2 import FakeV2Azure
from provider_contract import STACK, ProviderContract
from v2_support import SUBSCRIPTION, FakeTokenCredential

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


def test_preflight_names_size_and_quota(provider: AzureV2Provider, fake: FakeV2Azure) -> None:
    from provider_contract import COMPUTE

    assert provider.preflight("compute.cpu", COMPUTE) == []
    problems = provider.preflight("compute.cpu", {**COMPUTE, "vm_size": "Standard_Z99"})
    assert problems == ["vm_size Standard_Z99 is not offered for AmlCompute in the workspace's "
                        "region"]
    fake.vcpu_quota["standardDv2Family"] = 6
    [problem] = provider.preflight("compute.cpu", {**COMPUTE, "vm_priority": "dedicated"})
    assert "needs 8 dedicated vCPUs of standardDv2Family; 6 of 6 are free" in problem


def test_a_reused_name_that_keeps_the_old_size_is_refused(provider: AzureV2Provider,
                                                          fake: FakeV2Azure) -> None:
    """Azure ML may hand back the deleted cluster's size: the create reads back and refuses."""
    from provider_contract import COMPUTE

    from amlctl.errors import ProviderError

    provider.create("compute.cpu", COMPUTE, {})
    provider.delete("compute.cpu")
    fake.reuse_keeps_old_size = True
    with pytest.raises(ProviderError, match="kept settings of the cluster this name had"):
        provider.create("compute.cpu", {**COMPUTE, "vm_size": "Standard_DS3_v2"}, {})


def test_only_scale_settings_change_in_place(provider: AzureV2Provider,
                                             fake: FakeV2Azure) -> None:
    from provider_contract import COMPUTE

    from amlctl.errors import ProviderError

    provider.create("compute.cpu", COMPUTE, {})
    with pytest.raises(ProviderError, match="vm_size cannot change in place"):
        provider.update("compute.cpu", {**COMPUTE, "vm_size": "Standard_DS3_v2"}, ["vm_size"],
                        {})
    provider.update("compute.cpu", {**COMPUTE, "max_nodes": 8}, ["max_nodes"], {})
    puts = fake.calls_to("PUT", "/computes/cpu")
    assert len(puts) == 2, "the update is a PUT of the whole definition"
    assert puts[1].json()["properties"]["properties"]["vmSize"] == "Standard_D2_v2"
    assert fake.compute("contract-rg", "contract-ws", "cpu")["properties"]["properties"][
        "scaleSettings"]["maxNodeCount"] == 8


def test_workspace_created_with_its_resource_group(fake: FakeV2Azure,
                                                   credential: FakeTokenCredential,
                                                   tmp_path: Path) -> None:
    """`create_resource_group: true`, then the ARM template deployment SDK v2 sends."""
    attrs = {**WORKSPACE, "name": "fresh-ws", "resource_group": "fresh-rg",
             "create_resource_group": True, "tags": {"team": "vision"}}
    provider = AzureV2Provider(attrs, STACK, tmp_path, credential=credential,
                               cloud="AzureCloud", policy=RetryPolicy(sleep=lambda _s: None))
    assert provider.read_all() == {}
    provider.create("workspace", attrs, {})
    assert "fresh-rg" in fake.resource_groups
    live = provider.read_all()["workspace"]
    assert live.owner == STACK and live.attrs["tags"] == {"team": "vision"}
    assert live.attrs["location"] == "westeurope"
    [deployment] = fake.calls_to("PUT", "/providers/Microsoft.Resources/deployments/")
    assert deployment.query["api-version"] == "2020-06-01"
