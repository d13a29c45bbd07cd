"""The real azureml SDK against the fake service: only the network edge is replaced.

These tests call the SDK directly (no amlctl code between) to show the fake answers what the
SDK really sends: compute create / get / update / list / delete, the operation polling, and
the node-count wait.
"""

from __future__ import annotations

import hashlib
import socket
import time
from typing import Any

import pytest
from fake_service import FakeAzure, NonLoopbackConnection, route_hosts


def test_edge_refuses_non_loopback_and_routes_azure_names(azure_edge: Any) -> None:
    """Azure names resolve to the fake; any other address is refused before a packet leaves."""
    with route_hosts(azure_edge.service.port) as refused:
        addr = socket.getaddrinfo("management.azure.com", 443)[0][4]
        assert addr == ("127.0.0.1", azure_edge.service.port)
        assert socket.getaddrinfo("acct.blob.core.windows.net", 443)[0][4][0] == "127.0.0.1"
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            with pytest.raises(NonLoopbackConnection):
                s.connect(("192.0.2.10", 443))  # TEST-NET-1: refused before any packet
        finally:
            s.close()
        assert refused == [(socket.AF_INET, ("192.0.2.10", 443))]


def test_workspace_get_reads_arm_and_discovery(workspace: Any, fake: FakeAzure) -> None:
    """Workspace.get goes through ARM (api-version 2022-05-01); discovery is read lazily."""
    assert workspace.name == "ml-ws"
    assert workspace.location == "westeurope"
    gets = fake.calls_to("GET", "/workspaces/ml-ws")
    assert gets and gets[0].query["api-version"] == "2022-05-01"
    assert gets[0].host == "management.azure.com"


def test_compute_lifecycle_with_the_real_sdk(workspace: Any, fake: FakeAzure) -> None:
    """create, wait, get, list, update, delete: the SDK's own calls, each well under a second."""
    from azureml.core.compute import AmlCompute, ComputeTarget

    t0 = time.perf_counter()
    config = AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", vm_priority="lowpriority", min_nodes=1, max_nodes=3,
        idle_seconds_before_scaledown=300, vnet_resourcegroup_name="net-rg", vnet_name="vnet",
        subnet_name="default", tags={"amlctl.stack": "demo"}, description="cpu")
    target = ComputeTarget.create(workspace, "cpu", config)
    put = fake.calls_to("PUT", "/computes/cpu")[0]
    assert put.host == "management.azure.com"
    assert put.query["api-version"] == "2020-02-02"
    body = put.json()
    assert body["properties"]["properties"]["scaleSettings"] == {
        "minNodeCount": 1, "maxNodeCount": 3, "nodeIdleTimeBeforeScaleDown": "PT300S"}
    assert body["properties"]["properties"]["subnet"]["id"].endswith(
        "/resourceGroups/net-rg/providers/Microsoft.Network/virtualNetworks/vnet/subnets/default")
    assert target.provisioning_state == "Creating"

    target.wait_for_completion(show_output=False)
    assert target.provisioning_state == "Succeeded"
    status = target.get_status().serialize()
    assert status["currentNodeCount"] == 1  # the wait also waited for min_nodes

    again = AmlCompute(workspace, "cpu")
    assert again.vm_priority == "LowPriority"
    assert again.scale_settings.idle_seconds_before_scaledown == 300
    assert (again.vnet_resourcegroup_name, again.vnet_name, again.subnet_name) == (
        "net-rg", "vnet", "default")
    assert again.tags == {"amlctl.stack": "demo"}
    assert fake.calls_to("GET", "/rp/workspaces/")  # reads go to the region host

    assert [c.name for c in ComputeTarget.list(workspace)] == ["cpu"]

    again.update(min_nodes=2, max_nodes=4, idle_seconds_before_scaledown=600)
    again.wait_for_completion(show_output=False)
    assert again.scale_settings.maximum_node_count == 4
    assert again.get_status().current_node_count == 2

    again.delete()
    again.wait_for_completion(show_output=False, is_delete_operation=True)
    assert ComputeTarget.list(workspace) == []
    assert fake.calls_to("DELETE", "/computes/cpu")[0].query["underlyingResourceAction"] == \
        "delete"
    assert time.perf_counter() - t0 < 5


def test_datastores_with_the_real_sdk(workspace: Any, fake: FakeAzure) -> None:
    """Default datastore, register (account key, then SAS with overwrite), get and list."""
    from azureml.core import Datastore

    default = workspace.get_default_datastore()
    assert default.name == "workspaceblobstore"
    assert default.account_key  # a single get returns the credential

    key = fake.add_storage_account("imagestore", ["images"])
    ds = Datastore.register_azure_blob_container(
        workspace, "images", container_name="images", account_name="imagestore",
        account_key=key)
    assert (ds.name, ds.container_name, ds.account_name) == ("images", "images", "imagestore")
    assert ds.credential_type == "AccountKey"

    ds = Datastore.register_azure_blob_container(
        workspace, "images", container_name="images", account_name="imagestore",
        sas_token="sv=2021-08-06&sig=abc", overwrite=True)
    assert ds.credential_type == "Sas"
    listed = workspace.datastores
    assert sorted(listed) == ["images", "workspaceblobstore"]
    # the SDK's list asks for secrets (includeSecret=true) despite its docstring
    assert fake.calls_to("GET", "/datastores")[-1].query["includeSecret"] == "true"
    assert listed["images"].sas_token == "sv=2021-08-06&sig=abc"


def test_blob_list_and_upload_with_the_real_sdk(workspace: Any, fake: FakeAzure) -> None:
    """The vendored v12 BlobServiceClient: put (single and in blocks), metadata, list, delete."""
    ds = workspace.get_default_datastore()
    container = ds.blob_service.get_container_client(ds.container_name)
    container.upload_blob("data/a.txt", b"hello", metadata={"amlctl_sha256": "x1"})
    # past max_single_put_size the client sends blocks and a block list: no MD5 is kept
    container._config.max_single_put_size = 64 * 1024
    container._config.max_block_size = 32 * 1024
    container.upload_blob("data/b.bin", b"\1" * 100_000, max_concurrency=2,
                          metadata={"amlctl_sha256": "x2"})
    committed, _ = container.get_blob_client("data/b.bin").get_block_list()
    assert len(committed) == 4  # sent in blocks (Azurite keeps the committed block list)
    blobs = list(container.list_blobs(name_starts_with="data/", include=["metadata"]))
    assert [(b.name, b.size) for b in blobs] == [("data/a.txt", 5), ("data/b.bin", 100_000)]
    assert blobs[0].metadata == {"amlctl_sha256": "x1"}
    assert bytes(blobs[0].content_settings.content_md5) == hashlib.md5(b"hello").digest()
    assert blobs[1].content_settings.content_md5 is None
    assert container.download_blob("data/b.bin").readall() == b"\1" * 100_000
    container.delete_blob("data/a.txt")
    container.delete_blob("data/b.bin")
    assert list(container.list_blobs(name_starts_with="data/")) == []
