"""AmlCompute's camelCase status body (v1 get_status().serialize(), v2's ARM properties)
read into the backend-neutral ComputeStatus. Bodies as the service sends them."""

from __future__ import annotations

from amlctl.providers.azure.computes import status_from_aml


def test_a_cluster_still_creating_has_no_node_counts() -> None:
    status = status_from_aml({"provisioningState": "Creating"})
    assert not status.provisioned
    assert (status.current_nodes, status.nodes, status.errors) == (None, {}, ())
    assert status.to_json()["nodes"] == {}


def test_errors_and_nodes_by_state() -> None:
    status = status_from_aml({
        "provisioningState": "Succeeded", "allocationState": "Resizing",
        "currentNodeCount": 3, "targetNodeCount": 4, "vmPriority": "LowPriority",
        "nodeStateCounts": {"idleNodeCount": 1, "runningNodeCount": 1,
                            "preemptedNodeCount": 1},
        "scaleSettings": {"minNodeCount": 0, "maxNodeCount": 4},
        "errors": [{"error": {"code": "QuotaExceeded", "message": "not enough cores"}}],
    })
    assert (status.current_nodes, status.target_nodes) == (3, 4)
    assert status.nodes == {"idle": 1, "running": 1, "preparing": 0, "leaving": 0,
                            "preempted": 1, "unusable": 0}
    assert status.errors == ("QuotaExceeded: not enough cores",)
    assert (status.min_nodes, status.max_nodes, status.vm_priority) == (0, 4, "lowpriority")
