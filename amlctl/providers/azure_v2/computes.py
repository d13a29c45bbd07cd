"""AmlCompute clusters through SDK v2: manifest attributes to `AmlCompute` and back.

The read-back is the v1 backend's vocabulary exactly (amlctl.providers.azure.computes), so a
cluster made by either SDK plans no change on the other. In place (the SDK's PUT of the whole
definition, which Azure ML accepts when only scale settings differ): min_nodes, max_nodes,
idle_seconds_before_scaledown, the same fields as v1. Anything else replaces the cluster, and
every create is read back and checked with v1's `_check_fixed_fields`, because Azure ML may
hand out the old size or priority when a name is reused soon after a delete.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from amlctl.errors import ProviderError
from amlctl.providers.azure.computes import (
    PRIORITY_FROM_SERVICE,
    UPDATABLE,
    Computes,
    ComputeSettings,
    quota_family,
    status_from_aml,
    user_tags,
)
from amlctl.providers.azure.retry import DEFAULT_POLICY, RetryPolicy, call, first_line
from amlctl.providers.azure_v2 import sdk
from amlctl.providers.base import OWNER_TAG, ComputeStatus

__all__ = ["UPDATABLE", "V2Computes", "normalise", "subnet_id"]

log = logging.getLogger("amlctl.azure_v2.computes")

TIER = {"dedicated": "dedicated", "lowpriority": "low_priority"}
_SUBNET = re.compile(r"^/subscriptions/[^/]+/resourceGroups/(?P<rg>[^/]+)/providers/"
                     r"Microsoft\.Network/virtualNetworks/(?P<vnet>[^/]+)/subnets/(?P<sub>[^/]+)$",
                     re.I)


def subnet_id(subscription_id: str, vnet: dict[str, str]) -> str:
    """The subnet's ARM id, as v1's provisioning configuration builds it."""
    return (f"/subscriptions/{subscription_id}/resourceGroups/{vnet['resource_group']}"
            f"/providers/Microsoft.Network/virtualNetworks/{vnet['name']}"
            f"/subnets/{vnet['subnet']}")


def to_entity(name: str, attrs: dict[str, Any], secrets: dict[str, str], stack: str,
              subscription_id: str) -> Any:
    """The SDK's AmlCompute for manifest attributes (no network)."""
    entities = sdk.load().entities
    vnet = attrs.get("vnet") or None
    ssh = None
    if attrs.get("admin_username"):
        ssh = entities.AmlComputeSshSettings(
            admin_username=attrs["admin_username"],
            admin_password=secrets.get("admin_user_password"),
            ssh_key_value=attrs.get("admin_user_ssh_key"))
    return entities.AmlCompute(
        name=name, size=attrs["vm_size"],
        tier=TIER[attrs.get("vm_priority") or "dedicated"],
        min_instances=int(attrs.get("min_nodes") or 0), max_instances=int(attrs["max_nodes"]),
        idle_time_before_scale_down=int(attrs.get("idle_seconds_before_scaledown") or 1800),
        network_settings=entities.NetworkSettings(subnet=subnet_id(subscription_id, vnet))
        if vnet else None,
        ssh_settings=ssh, tags={**user_tags(attrs.get("tags")), OWNER_TAG: stack},
        description=attrs.get("description"))


def normalise(compute: Any) -> dict[str, Any]:
    """An SDK v2 AmlCompute in the manifest's vocabulary (the same dict v1's normalise gives)."""
    vnet = None
    subnet = getattr(compute.network_settings, "subnet", None) if compute.network_settings \
        else None
    match = _SUBNET.match(subnet or "")
    if match:
        vnet = {"resource_group": match["rg"], "name": match["vnet"], "subnet": match["sub"]}
    tier = str(compute.tier or "dedicated").replace("_", "").lower()
    ssh = compute.ssh_settings
    return {
        "vm_size": compute.size,
        "vm_priority": PRIORITY_FROM_SERVICE.get(tier, tier),
        "min_nodes": int(compute.min_instances or 0),
        "max_nodes": int(compute.max_instances or 0),
        "idle_seconds_before_scaledown": int(compute.idle_time_before_scale_down or 0),
        "vnet": vnet,
        "tags": user_tags(compute.tags),
        "description": compute.description or None,
        "admin_username": (ssh.admin_username if ssh else None) or None,
        "admin_user_password": None,  # write-only
        "admin_user_ssh_key": (ssh.ssh_key_value if ssh else None) or None,
    }


class V2Computes:
    """The AmlCompute clusters of one workspace, through `ml_client.compute`."""

    def __init__(self, client: Any, stack: str, policy: RetryPolicy = DEFAULT_POLICY,
                 settings: ComputeSettings | None = None) -> None:
        self.client = client
        self.stack = stack
        self.policy = policy
        self.settings = settings or ComputeSettings()

    def get(self, name: str) -> Any | None:
        """The cluster, or None when there is none or it is being deleted."""
        def fetch() -> Any | None:
            try:
                compute = self.client.compute.get(name)
            except Exception as e:
                if sdk.is_not_found(e):
                    return None
                raise
            if str(compute.provisioning_state) == "Deleting":
                return None
            if str(compute.type).lower() != "amlcompute":
                raise ProviderError(f"compute.{name} exists but is a {compute.type}, not an "
                                    "AmlCompute cluster")
            return compute

        return call(f"reading compute {name}", fetch, self.policy)

    def read_all(self) -> dict[str, tuple[dict[str, Any], str | None]]:
        """name -> (attributes, owner) of every AmlCompute cluster."""
        found = call("listing computes", lambda: list(self.client.compute.list(
            compute_type="AmlCompute")), self.policy)
        return {c.name: (normalise(c), (c.tags or {}).get(OWNER_TAG)) for c in found
                if str(c.provisioning_state) != "Deleting"}

    def _put(self, name: str, attrs: dict[str, Any], secrets: dict[str, str],
             what: str) -> None:
        entity = to_entity(name, attrs, secrets, self.stack,
                           self.client.subscription_id)
        poller = call(f"{what} compute {name}",
                      lambda: self.client.compute.begin_create_or_update(entity), self.policy)
        result = call(f"waiting for compute {name}", poller.result, self.policy)
        if str(getattr(result, "provisioning_state", "")).lower() == "failed":
            raise ProviderError(f"compute.{name} failed to provision: "
                                f"{result.provisioning_errors}; check the regional vCPU quota, "
                                "the VM size's availability in the region and the subnet")

    def create(self, name: str, attrs: dict[str, Any], secrets: dict[str, str]
               ) -> dict[str, Any]:
        """Create (or, for this stack's existing cluster, bring its scale settings in line)
        and verify what Azure ML built."""
        existing = self.get(name)
        if existing is not None:
            owner = (existing.tags or {}).get(OWNER_TAG)
            if owner != self.stack:
                raise ProviderError(f"compute.{name} already exists and belongs to "
                                    f"{'stack ' + repr(owner) if owner else 'no amlctl stack'}"
                                    "; amlctl will not take it over")
            Computes._check_fixed_fields(name, normalise(existing), attrs)
        self._put(name, attrs, secrets, "updating" if existing is not None else "creating")
        return self.verify(name, attrs)

    def update(self, name: str, attrs: dict[str, Any], secrets: dict[str, str]
               ) -> dict[str, Any]:
        """Change the scale settings in place (a PUT of the unchanged rest)."""
        if self.get(name) is None:
            raise ProviderError(f"compute.{name} does not exist; it cannot be updated")
        self._put(name, attrs, secrets, "updating")
        return self.verify(name, attrs)

    def verify(self, name: str, attrs: dict[str, Any]) -> dict[str, Any]:
        """Read the cluster back; fail when a fixed field is not what was asked (v1's check)."""
        compute = self.get(name)
        if compute is None:
            raise ProviderError(f"compute.{name} vanished right after it was created")
        live = normalise(compute)
        Computes._check_fixed_fields(name, live, attrs)
        return live

    def delete(self, name: str) -> None:
        """Delete and wait until Azure ML no longer lists it. Absent: nothing to do."""
        def begin() -> Any:
            try:
                return self.client.compute.begin_delete(name)
            except Exception as e:
                if sdk.is_not_found(e):
                    return None
                raise

        poller = call(f"deleting compute {name}", begin, self.policy)
        if poller is not None:
            call(f"waiting for compute {name} to be deleted", poller.result, self.policy)
        deadline = time.monotonic() + self.settings.gone_timeout_s
        while self._exists(name):
            if time.monotonic() > deadline:
                raise ProviderError(f"compute.{name} still exists "
                                    f"{self.settings.gone_timeout_s:.0f}s after its delete "
                                    "finished; check it in the Azure portal and apply again")
            self.settings.sleep(self.settings.poll_s)

    def _exists(self, name: str) -> bool:
        def fetch() -> bool:
            try:
                self.client.compute.get(name)
            except Exception as e:
                if sdk.is_not_found(e):
                    return False
                raise
            return True

        return call(f"reading compute {name}", fetch, self.policy)

    def status(self, name: str) -> ComputeStatus:
        """The cluster's state from the ARM properties the SDK v2 entity leaves out (node
        counts, allocation state): the same camelCase body v1's get_status() reads."""
        ops = self.client.compute._operation  # the entity drops node counts; the REST body has them
        scope = self.client.compute._operation_scope
        try:
            rest = call(f"reading status of compute {name}", lambda: ops.get(
                scope.resource_group_name, self.client.workspace_name, name), self.policy)
        except ProviderError as e:
            if getattr(e, "status", None) == 404:
                raise ProviderError(f"no compute {name!r} in workspace "
                                    f"{self.client.workspace_name!r}") from e
            raise
        props = rest.properties
        inner = dict(props.properties.as_dict() if hasattr(props.properties, "as_dict")
                     else props.properties)
        out = {k: inner.get(k) for k in ("currentNodeCount", "targetNodeCount",
                                         "nodeStateCounts", "allocationState",
                                         "allocationStateTransitionTime", "errors")}
        out["nodeStateCounts"] = dict(out["nodeStateCounts"] or {})
        out["provisioningState"] = props.provisioning_state
        out["vmSize"] = inner.get("vmSize")
        out["vmPriority"] = inner.get("vmPriority")
        out["scaleSettings"] = dict(inner.get("scaleSettings") or {})
        return status_from_aml(out)

    def preflight(self, attrs: dict[str, Any]) -> list[str]:
        """What Azure ML would only report at create time (the v1 backend's checks): the VM
        size is not offered in the region, or max_nodes x vCPUs exceeds the free dedicated
        quota of its family."""
        compute = self.client.compute
        sizes = call("listing VM sizes", lambda: list(compute.list_sizes(
            compute_type="AmlCompute")), self.policy)
        by_name = {str(_attr(v, "name")).lower(): v for v in sizes}
        size = by_name.get(str(attrs["vm_size"]).lower())
        if size is None:
            return [f"vm_size {attrs['vm_size']} is not offered for AmlCompute in the "
                    "workspace's region"]
        if (attrs.get("vm_priority") or "dedicated") != "dedicated":
            return []  # low priority draws on a separate, shared quota
        family = quota_family(str(attrs["vm_size"]))
        if family is None:
            return []
        try:
            usages = call("reading quota usage", lambda: list(compute.list_usage()), self.policy)
        except ProviderError as e:  # reading usage needs more rights than creating; not fatal
            log.info("quota check skipped: %s", first_line(e))
            return []
        vcpus = int(_attr(size, "v_cp_us", "vCPUs") or 0)
        needed = int(attrs["max_nodes"]) * vcpus
        for usage in usages:
            name = _attr(usage, "name")
            value = _attr(name, "value") if name is not None else None
            if str(value or "").lower() == family.lower():
                limit, used = int(_attr(usage, "limit")), int(_attr(usage, "current_value",
                                                                    "currentValue"))
                if needed > limit - used:
                    return [f"max_nodes {attrs['max_nodes']} x {vcpus} vCPUs of "
                            f"{attrs['vm_size']} needs {needed} dedicated vCPUs of {family}; "
                            f"{limit - used} of {limit} are free. Request more quota or lower "
                            "max_nodes"]
        return []


def _attr(obj: Any, *names: str) -> Any:
    """A field of an SDK entity that may hold it under its Python or its wire name (VmSize and
    Usage copy the REST model's dict into themselves)."""
    for name in names:
        value = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
        if value is not None:
            return value
    return None
