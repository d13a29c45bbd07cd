"""One contract every backend honours, run against each: create, read back equal, update in
place, replace, delete (what prune does), status. Subclassed per backend with a `provider`
fixture (tests/providers/test_local_contract.py, tests/azure/test_azure_contract.py).

The attributes are the manifest's vocabulary, exactly what the engine hands a provider.
"""

from __future__ import annotations

from typing import Any

from amlctl.providers.base import ComputeStatus, Provider

STACK = "contract"
COMPUTE: dict[str, Any] = {
    "vm_size": "Standard_D2_v2", "vm_priority": "lowpriority", "min_nodes": 0, "max_nodes": 4,
    "idle_seconds_before_scaledown": 300,
    "vnet": {"resource_group": "net-rg", "name": "vnet", "subnet": "train"},
    "tags": {}, "description": None, "admin_username": None, "admin_user_password": None,
    "admin_user_ssh_key": None,
}
EXPERIMENT: dict[str, Any] = {"tags": {"team": "vision"}}


def changed_fields(want: dict[str, Any], have: dict[str, Any]) -> set[str]:
    """Fields the engine's differ would report (missing, {} and [] count as the same)."""
    def normal(value: Any) -> Any:
        return None if value in ({}, [], None) else value
    return {k for k, v in want.items() if normal(have.get(k)) != normal(v)}


class ProviderContract:
    """Behaviour the engine relies on, whatever the backend. Needs a `provider` fixture whose
    workspace exists (created by this stack) and holds nothing else."""

    def test_create_reads_back_equal_and_owned(self, provider: Provider) -> None:
        provider.create("compute.cpu", COMPUTE, {})
        provider.create("experiment.exp", EXPERIMENT, {})
        live = provider.read_all()
        assert live["compute.cpu"].owner == STACK
        assert changed_fields(COMPUTE, live["compute.cpu"].attrs) == set()
        assert live["experiment.exp"].owner == STACK

    def test_create_twice_is_idempotent(self, provider: Provider) -> None:
        provider.create("compute.cpu", COMPUTE, {})
        provider.create("compute.cpu", COMPUTE, {})
        assert [a for a in provider.read_all() if a.startswith("compute.")] == ["compute.cpu"]

    def test_scale_settings_update_in_place(self, provider: Provider) -> None:
        provider.create("compute.cpu", COMPUTE, {})
        assert {"min_nodes", "max_nodes", "idle_seconds_before_scaledown"} <= \
            provider.updatable_fields("compute")
        assert "vm_size" not in provider.updatable_fields("compute")
        want = {**COMPUTE, "min_nodes": 1, "max_nodes": 6, "idle_seconds_before_scaledown": 900}
        provider.update("compute.cpu", want, ["min_nodes", "max_nodes",
                                              "idle_seconds_before_scaledown"], {})
        assert changed_fields(want, provider.read_all()["compute.cpu"].attrs) == set()

    def test_replace_is_delete_then_create(self, provider: Provider) -> None:
        provider.create("compute.cpu", COMPUTE, {})
        bigger = {**COMPUTE, "vm_size": "Standard_DS3_v2"}
        provider.delete("compute.cpu")
        assert "compute.cpu" not in provider.read_all()
        provider.create("compute.cpu", bigger, {})
        assert provider.read_all()["compute.cpu"].attrs["vm_size"].lower() == "standard_ds3_v2"

    def test_delete_is_idempotent(self, provider: Provider) -> None:
        provider.create("compute.cpu", COMPUTE, {})
        provider.delete("compute.cpu")
        provider.delete("compute.cpu")
        assert "compute.cpu" not in provider.read_all()

    def test_status_is_a_typed_compute_status(self, provider: Provider) -> None:
        """An idle cluster settles at min_nodes nodes, all idle (AmlCompute keeps that floor)."""
        provider.create("compute.cpu", {**COMPUTE, "min_nodes": 2}, {})
        status = provider.compute_status("cpu")
        assert isinstance(status, ComputeStatus)
        assert (status.current_nodes, status.target_nodes) == (2, 2)
        assert status.nodes == {"idle": 2, "running": 0, "preparing": 0, "leaving": 0,
                                "preempted": 0, "unusable": 0}
        assert (status.allocation_state, status.provisioning_state) == ("Steady", "Succeeded")
        assert (status.min_nodes, status.max_nodes) == (2, COMPUTE["max_nodes"])
        assert status.errors == ()

    def test_no_runs_before_any_submission(self, provider: Provider) -> None:
        assert provider.list_runs() == []
