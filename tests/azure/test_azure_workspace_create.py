"""Workspace creation through the real `Workspace.create`: the resource provider lookup, the
ARM template deployment (storage, key vault, insights, the workspace) served by the fake
(tests/azure/fake_arm.py), then the workspace's own services."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure

from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy

ATTRS = {"name": "new-ws", "subscription_id": SUBSCRIPTION, "resource_group": "new-rg",
         "location": "westeurope", "tags": {"team": "vision"}}


def provider_for(attrs: dict[str, Any], token_auth: Any, tmp_path: Path,
                 create_resource_group: bool) -> AzureProvider:
    return AzureProvider({**attrs, "create_resource_group": create_resource_group}, "demo",
                         tmp_path, auth=token_auth, cloud="AzureCloud",
                         policy=RetryPolicy(sleep=lambda _s: None))


def test_a_new_workspace_is_deployed_tagged_and_usable(fake: FakeAzure, token_auth: Any,
                                                       tmp_path: Path) -> None:
    provider = provider_for(ATTRS, token_auth, tmp_path, create_resource_group=True)
    assert provider.read_all() == {}  # nothing yet: plan would create it
    provider.create("workspace", ATTRS, {})
    assert "new-rg" in fake.resource_groups
    (deployment,) = fake.calls_to("PUT", "/providers/Microsoft.Resources/deployments/")
    kinds = {r["type"] for r in deployment.json()["properties"]["template"]["resources"]}
    assert {"Microsoft.Storage/storageAccounts", "Microsoft.KeyVault/vaults",
            "Microsoft.MachineLearningServices/workspaces"} <= kinds
    assert fake.calls_to("GET", "/providers/Microsoft.MachineLearningServices")
    live = provider_for(ATTRS, token_auth, tmp_path, True).read_all()
    assert live["workspace"].owner == "demo"
    assert live["workspace"].attrs["tags"] == {"team": "vision"}
    # its default datastore is the storage account the deployment made
    store = provider.file_store("default", "data")
    assert store.list_files() == {}
    source = tmp_path / "f.txt"
    source.write_text("x")
    store.put_file(source, "f.txt")
    assert set(store.list_files()) == {"f.txt"}


def test_an_existing_resource_group_is_used_as_it_is(fake: FakeAzure, token_auth: Any,
                                                     tmp_path: Path) -> None:
    fake.resource_groups["new-rg"] = {"location": "northeurope", "tags": {"cost": "ml"}}
    provider_for(ATTRS, token_auth, tmp_path, create_resource_group=False).create(
        "workspace", ATTRS, {})
    assert fake.resource_groups["new-rg"]["tags"] == {"cost": "ml"}
    assert ("new-rg", "new-ws") in fake.workspaces
