"""AmlCompute clusters: manifest attributes to the SDK and back.

Only scale settings (min_nodes, max_nodes, idle_seconds_before_scaledown) change in place: the
SDK's `update` is the one update path AML offers. Every other field, tags included, means a
new cluster: the engine deletes (this module waits until the cluster is really gone), then
creates, and `create` reads the result back and refuses it when AML handed out the old size or
priority, which it does when a name is reused too soon after a delete.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from amlctl.errors import ProviderError
from amlctl.providers.azure import sdk
from amlctl.providers.azure.retry import DEFAULT_POLICY, RetryPolicy, call, first_line
from amlctl.providers.base import NODE_STATES, OWNER_TAG, ComputeStatus

log = logging.getLogger("amlctl.azure.computes")

UPDATABLE = frozenset({"min_nodes", "max_nodes", "idle_seconds_before_scaledown"})
# Checked after every create: what AML may silently keep from a deleted cluster of that name.
VERIFIED = ("vm_size", "vm_priority", "vnet")
PRIORITY_FROM_SERVICE = {"dedicated": "dedicated", "lowpriority": "lowpriority"}


@dataclass(frozen=True)
class ComputeSettings:
    """Waiting behaviour; the defaults suit CI."""

    node_wait_minutes: int = 0  # 0: do not wait for min_nodes to be allocated after create
    gone_timeout_s: float = 600.0  # how long a deleted cluster may still show up in reads
    poll_s: float = 5.0
    sleep: Callable[[float], None] = time.sleep


def user_tags(tags: dict[str, str] | None) -> dict[str, str]:
    """Tags as the manifest writes them: without amlctl's owner tag."""
    return {k: v for k, v in (tags or {}).items() if k != OWNER_TAG}


def provisioning_config(attrs: dict[str, Any], secrets: dict[str, str], stack: str) -> Any:
    """The SDK's AmlComputeProvisioningConfiguration for manifest attributes (validated locally,
    no network)."""
    s = sdk.load()
    vnet = attrs.get("vnet") or {}
    return s.AmlCompute.provisioning_configuration(
        vm_size=attrs["vm_size"],
        vm_priority=attrs.get("vm_priority") or "dedicated",
        min_nodes=int(attrs.get("min_nodes") or 0),
        max_nodes=int(attrs["max_nodes"]),
        idle_seconds_before_scaledown=int(attrs.get("idle_seconds_before_scaledown") or 1800),
        admin_username=attrs.get("admin_username"),
        admin_user_password=secrets.get("admin_user_password"),
        admin_user_ssh_key=attrs.get("admin_user_ssh_key"),
        vnet_resourcegroup_name=vnet.get("resource_group"),
        vnet_name=vnet.get("name"),
        subnet_name=vnet.get("subnet"),
        tags={**user_tags(attrs.get("tags")), OWNER_TAG: stack},
        description=attrs.get("description"),
    )


def normalise(target: Any) -> dict[str, Any]:
    """A cluster read from AML in the manifest's vocabulary, so an unchanged manifest diffs to
    nothing: priority lower-case, the subnet id split into vnet parts, idle time in seconds.
    The admin password is write-only: reported as None (the service cannot tell)."""
    scale = target.scale_settings
    vnet = None
    if target.vnet_name:
        vnet = {"resource_group": target.vnet_resourcegroup_name, "name": target.vnet_name,
                "subnet": target.subnet_name}
    priority = str(target.vm_priority or "dedicated").lower()
    return {
        "vm_size": target.vm_size,
        "vm_priority": PRIORITY_FROM_SERVICE.get(priority, priority),
        "min_nodes": int(scale.minimum_node_count) if scale else 0,
        "max_nodes": int(scale.maximum_node_count) if scale else 0,
        "idle_seconds_before_scaledown": int(scale.idle_seconds_before_scaledown or 0)
        if scale else 0,
        "vnet": vnet,
        "tags": user_tags(target.tags),
        "description": target.description or None,
        "admin_username": target.admin_username or None,
        "admin_user_password": None,
        "admin_user_ssh_key": target.admin_user_ssh_key or None,
    }


_SIZE_NAME = re.compile(r"standard_([a-z]+?)(\d+)([a-z]*)((?:_(?!v\d)[a-z]\d+)?)(_v\d+)?",
                        re.I)


def quota_family(vm_size: str) -> str | None:
    """The quota family Azure counts a size against (Standard_NC6s_v3 -> standardNCSv3Family);
    None for names outside the usual pattern (the quota check is then skipped)."""
    m = _SIZE_NAME.fullmatch(vm_size)
    if m is None:
        return None
    letters, _, suffix, accelerator, version = m.groups()
    return (f"standard{letters.upper()}{suffix.upper()}{(version or '')[1:].lower()}"
            f"{accelerator.upper()}Family")


def same_vm_size(a: str | None, b: str | None) -> bool:
    """Azure treats VM size names case-insensitively (Standard_NC6 is STANDARD_NC6)."""
    return (a or "").lower() == (b or "").lower()


class Computes:
    """The AmlCompute clusters of one workspace."""

    def __init__(self, workspace: Any, stack: str, policy: RetryPolicy = DEFAULT_POLICY,
                 settings: ComputeSettings | None = None) -> None:
        self.ws = workspace
        self.stack = stack
        self.policy = policy
        self.settings = settings or ComputeSettings()

    # reading -----------------------------------------------------------------------------------

    def get(self, name: str) -> Any | None:
        """The cluster, or None when there is none (or it is being deleted)."""
        s = sdk.load()

        def fetch() -> Any | None:
            # ComputeTarget._get is the SDK's own single GET (None on 404): unlike the public
            # constructor it lets a cluster that is being deleted read as absent
            payload = s.ComputeTarget._get(self.ws, name)
            if payload is None or payload["properties"]["provisioningState"] == "Deleting":
                return None
            if payload["properties"]["computeType"] != "AmlCompute":
                raise ProviderError(f"compute.{name} exists but is a "
                                    f"{payload['properties']['computeType']}, not an AmlCompute "
                                    "cluster")
            return s.AmlCompute.deserialize(self.ws, payload)

        return call(f"reading compute {name}", fetch, self.policy)

    def read_all(self) -> dict[str, tuple[dict[str, Any], str | None]]:
        """name -> (attributes, owner) for every AmlCompute cluster of the workspace."""
        s = sdk.load()
        targets = call("listing computes", lambda: s.ComputeTarget.list(self.ws), self.policy)
        out = {}
        for t in targets:
            if t.type != "AmlCompute" or t.provisioning_state == "Deleting":
                continue
            out[t.name] = (normalise(t), (t.tags or {}).get(OWNER_TAG))
        return out

    # writing -----------------------------------------------------------------------------------

    def create(self, name: str, attrs: dict[str, Any], secrets: dict[str, str]) -> dict[str, Any]:
        """Create the cluster, wait for provisioning, and check AML built what was asked.

        Idempotent: when this stack's cluster already exists with the same fixed fields, its
        scale settings are brought in line instead.
        """
        s = sdk.load()
        existing = self.get(name)
        if existing is not None:
            return self._adopt_existing(name, existing, attrs)
        config = provisioning_config(attrs, secrets, self.stack)
        problems = self.preflight(attrs)
        if problems:
            raise ProviderError(f"compute.{name}: {'; '.join(problems)}")
        attempts = 0

        def create_once() -> Any:
            # The SDK's create is a PUT, then a read. When an earlier attempt's PUT went through
            # and only its read failed, a second PUT is refused (409): a retry first looks for
            # the cluster that attempt made.
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                made = s.ComputeTarget._get(self.ws, name)
                if made is not None and made["properties"]["provisioningState"] != "Deleting":
                    return s.AmlCompute.deserialize(self.ws, made)
            return s.ComputeTarget.create(self.ws, name, config)

        target = call(f"creating compute {name}", create_once, self.policy)
        self._wait(name, target)
        return self.verify(name, attrs)

    def _adopt_existing(self, name: str, target: Any, attrs: dict[str, Any]) -> dict[str, Any]:
        owner = (target.tags or {}).get(OWNER_TAG)
        if owner != self.stack:
            raise ProviderError(f"compute.{name} already exists and belongs to "
                                f"{'stack ' + repr(owner) if owner else 'no amlctl stack'}; "
                                "amlctl will not take it over")
        live = normalise(target)
        self._check_fixed_fields(name, live, attrs)
        changed = [k for k in UPDATABLE if live[k] != attrs.get(k, live[k])]
        if changed:
            self.update(name, attrs)
        return self.verify(name, attrs)

    def update(self, name: str, attrs: dict[str, Any],
               secrets: dict[str, str] | None = None) -> dict[str, Any]:
        """Change min/max nodes and idle time in place (PATCH) and wait for it (no secret
        changes in place: `secrets` is taken for the interface both SDKs share)."""
        target = self.get(name)
        if target is None:
            raise ProviderError(f"compute.{name} does not exist; it cannot be updated")
        call(f"updating compute {name}", lambda: target.update(
            min_nodes=int(attrs.get("min_nodes") or 0), max_nodes=int(attrs["max_nodes"]),
            idle_seconds_before_scaledown=int(attrs.get("idle_seconds_before_scaledown")
                                              or 1800)), self.policy)
        self._wait(name, target)
        return normalise(target)

    def delete(self, name: str) -> None:
        """Delete the cluster and wait until AML no longer lists it. Absent: nothing to do."""
        s = sdk.load()
        payload = call(f"reading compute {name}", lambda: s.ComputeTarget._get(self.ws, name),
                       self.policy)
        if payload is None:
            return
        if payload["properties"]["provisioningState"] != "Deleting":
            target = s.AmlCompute.deserialize(self.ws, payload)
            call(f"deleting compute {name}", target.delete, self.policy)
            with sdk.captured_output():
                call(f"waiting for compute {name} to be deleted",
                     lambda: target.wait_for_completion(show_output=True,
                                                        is_delete_operation=True), self.policy)
        self._wait_until_gone(name)

    def _wait_until_gone(self, name: str) -> None:
        s = sdk.load()
        deadline = time.monotonic() + self.settings.gone_timeout_s
        while True:
            payload = call(f"reading compute {name}",
                           lambda: s.ComputeTarget._get(self.ws, name), self.policy)
            if payload is None:
                return
            if time.monotonic() > deadline:
                raise ProviderError(
                    f"compute.{name} is still {payload['properties']['provisioningState']} "
                    f"{self.settings.gone_timeout_s:.0f}s after its delete finished; check it in "
                    "the Azure portal and apply again")
            self.settings.sleep(self.settings.poll_s)

    def _wait(self, name: str, target: Any) -> None:
        """Wait for the running operation; fail with AML's own reason if provisioning failed."""
        with sdk.captured_output():
            call(f"waiting for compute {name}", lambda: target.wait_for_completion(
                show_output=True, timeout_in_minutes=self.settings.node_wait_minutes),
                self.policy)
        if str(target.provisioning_state).lower() == "failed":
            errors = target.provisioning_errors or (target.status.errors if target.status
                                                     else None)
            raise ProviderError(f"compute.{name} failed to provision: {errors}; check the "
                                "regional vCPU quota, the VM size's availability in the "
                                "region and the subnet")

    # checks --------------------------------------------------------------------------------------

    def verify(self, name: str, attrs: dict[str, Any]) -> dict[str, Any]:
        """Read the cluster back and fail if a fixed field differs from what was asked."""
        target = self.get(name)
        if target is None:
            raise ProviderError(f"compute.{name} vanished right after it was created")
        live = normalise(target)
        self._check_fixed_fields(name, live, attrs)
        return live

    @staticmethod
    def _check_fixed_fields(name: str, live: dict[str, Any], attrs: dict[str, Any]) -> None:
        wrong = []
        for key in VERIFIED:
            want, have = attrs.get(key), live.get(key)
            if key == "vm_priority":
                want = want or "dedicated"
            same = same_vm_size(want, have) if key == "vm_size" else want == have
            if not same:
                wrong.append(f"{key} is {have!r}, not {want!r}")
        if wrong:
            raise ProviderError(
                f"compute.{name}: AML kept settings of the cluster this name had before: "
                f"{'; '.join(wrong)}. This happens when a name is reused soon after a delete. "
                "Wait a few minutes, then run apply again (it will replace the cluster once "
                "more), or give the cluster a new name.")

    def status(self, name: str) -> ComputeStatus:
        """`get_status()` read into a ComputeStatus, with the provisioning state (also while
        get_status() is None: the cluster is Creating or Failed)."""
        target = self.get(name)
        if target is None:
            raise ProviderError(f"no compute {name!r} in workspace {self.ws.name!r}")
        with sdk.captured_output():
            status = call(f"reading status of compute {name}", target.get_status, self.policy)
        body = status.serialize() if status is not None else {}
        if not body.get("provisioningState"):
            body["provisioningState"] = target.provisioning_state
        return status_from_aml(body)

    def preflight(self, attrs: dict[str, Any], location: str | None = None) -> list[str]:
        """Problems AML would only report at create time: the VM size is not offered in the
        region, or max_nodes x vCPUs exceeds the remaining dedicated quota of its family."""
        s = sdk.load()
        sizes = call("listing VM sizes", lambda: s.AmlCompute.supported_vmsizes(
            self.ws, location=location), self.policy)
        by_name = {str(v["name"]).lower(): v for v in sizes}
        region = location or self.ws.location
        size = by_name.get(str(attrs["vm_size"]).lower())
        if size is None:
            return [f"vm_size {attrs['vm_size']} is not offered for AmlCompute in {region}"]
        if (attrs.get("vm_priority") or "dedicated") != "dedicated":
            return []  # low priority draws on a separate, shared quota
        try:
            usages = call("reading quota usage", lambda: s.AmlCompute.list_usages(
                self.ws, location=location), self.policy)
        except ProviderError as e:  # reading usage needs more rights than creating; not fatal
            log.info("quota check skipped: %s", first_line(e))
            return []
        family = quota_family(str(attrs["vm_size"]))
        if family is None:
            return []
        needed = int(attrs["max_nodes"]) * int(size["vCPUs"])
        for usage in usages:
            if str((usage.get("name") or {}).get("value", "")).lower() == family.lower():
                free = int(usage["limit"]) - int(usage["currentValue"])
                if needed > free:
                    return [f"max_nodes {attrs['max_nodes']} x {size['vCPUs']} vCPUs of "
                            f"{attrs['vm_size']} needs {needed} dedicated vCPUs of {family} in "
                            f"{region}; {free} of {usage['limit']} are free. Request more quota "
                            "or lower max_nodes"]
        return []


def status_from_aml(body: dict[str, Any]) -> ComputeStatus:
    """AmlCompute's camelCase status body (v1's get_status().serialize(), also the ARM
    properties v2 reads) as a ComputeStatus. Node counts stay None until AML reports them."""
    counts = body.get("nodeStateCounts") or {}
    scale = body.get("scaleSettings") or {}
    current = body.get("currentNodeCount")
    return ComputeStatus(
        provisioning_state=_text(body.get("provisioningState")) or "Unknown",
        allocation_state=_text(body.get("allocationState")),
        current_nodes=None if current is None else int(current),
        target_nodes=None if body.get("targetNodeCount") is None
        else int(body["targetNodeCount"]),
        nodes={s: int(counts.get(f"{s}NodeCount") or 0) for s in NODE_STATES}
        if current is not None else {},
        min_nodes=scale.get("minNodeCount"), max_nodes=scale.get("maxNodeCount"),
        errors=tuple(_error_line(e) for e in body.get("errors") or ()),
        vm_size=body.get("vmSize"),
        vm_priority=PRIORITY_FROM_SERVICE.get(str(body.get("vmPriority") or "").lower()),
    )


def _text(value: Any) -> str | None:
    """A state as its service string: SDK models hand out str enums whose str() is the
    member name (ProvisioningState.SUCCEEDED), not the value."""
    if value is None:
        return None
    return str(getattr(value, "value", value))


def _error_line(error: Any) -> str:
    """One line for an AML error entry ({"error": {"code", "message"}} or flatter)."""
    if isinstance(error, dict):
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        code, message = inner.get("code"), inner.get("message")
        if code or message:
            return ": ".join(str(p) for p in (code, message) if p)
    return str(error).splitlines()[0] if str(error) else "unknown error"
