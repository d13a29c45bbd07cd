"""The real azureml SDK against the fake service: only the network edge is replaced.

These tests call the SDK directly (no amlctl code between) to show the fake answers what the
SDK really sends: compute create / get / update / list / delete, the operation polling, and
the node-count wait.
"""

from __future__ import annotations

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
