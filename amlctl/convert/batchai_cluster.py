"""A Batch AI cluster as an AmlCompute cluster (`computes.NAME`)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml.comments import CommentedMap

from amlctl.convert import yamldoc
from amlctl.convert.report import Outcome, Report
from amlctl.convert.sources import SourceFile
from amlctl.convert.storage import Mount, Storage
from amlctl.manifest import vmsizes

# Used when a cluster file names no size, or no cluster file is given at all.
PLACEHOLDER_CPU_SIZE = "Standard_DS3_v2"
PLACEHOLDER_GPU_SIZE = "Standard_NC4as_T4_v3"

_SUBNET_ID = re.compile(
    r"/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.Network/virtualNetworks/(?P<vnet>[^/]+)"
    r"/subnets/(?P<subnet>[^/]+)$",
    re.IGNORECASE,
)


@dataclass
class ComputeDraft:
    """A compute being written: its manifest body and what jobs placed on it need to know."""

    name: str
    body: CommentedMap
    source: SourceFile | None  # None: made up because no cluster file was given
    batchai_name: str | None  # the cluster's name in Batch AI, when known
    mounts: list[Mount] = field(default_factory=list)
    max_nodes_given: bool = False  # max_nodes came from the file's scale settings
    gpus: int | None = None  # GPUs per node, from the catalogue; None when unknown
    notes: list[str] = field(default_factory=list)

    @property
    def target(self) -> str:
        """The compute's path in the manifest."""
        return f"computes.{self.name}"


def convert_cluster(src: SourceFile, name: str, batchai_name: str, storage: Storage,
                    report: Report) -> ComputeDraft:
    """Map the cluster file `src` to a compute called `name`, reporting every field."""
    draft = ComputeDraft(name, yamldoc.mapping(), src, batchai_name)
    _vm_size(src, draft, report)
    _priority(src, draft, report)
    _scale(src, draft, report)
    _image(src, draft, report)
    _user_account(src, draft, report)
    _subnet(src, draft, report)
    _node_setup(src, draft, storage, report)
    return draft


def placeholder_compute(name: str, batchai_name: str | None, gpu: bool) -> ComputeDraft:
    """A compute for jobs whose cluster file was not given; the caller reports it."""
    size = PLACEHOLDER_GPU_SIZE if gpu else PLACEHOLDER_CPU_SIZE
    body = yamldoc.mapping({"vm_size": size, "min_nodes": 0, "max_nodes": 1})
    # gpus stays unknown: the size is a guess made from the jobs' images, not a fact.
    draft = ComputeDraft(name, body, None, batchai_name)
    yamldoc.note(body, "vm_size", "placeholder: no cluster file was given; pick the size "
                 "your Batch AI cluster had (or its successor)", 2)
    return draft


def set_max_nodes(draft: ComputeDraft, needed: int, report: Report, run_names: list[str]) -> None:
    """Grow max_nodes to what the jobs placed on the compute need, and say so."""
    current = int(draft.body.get("max_nodes", 1))
    if needed <= current:
        return
    draft.body["max_nodes"] = needed
    runs = ", ".join(run_names)
    if draft.max_nodes_given and draft.source is not None:
        report.add(draft.source.name, draft.source.field("scaleSettings"), Outcome.ACTION,
                   f"{draft.target}.max_nodes",
                   f"max_nodes raised from {current} to {needed}: run(s) {runs} need "
                   f"{needed} nodes (Batch AI would have queued them forever)", remark=True)
        yamldoc.note(draft.body, "max_nodes", f"raised to fit run(s) {runs}", 2)
    else:
        yamldoc.note(draft.body, "max_nodes", f"the most nodes run(s) {runs} use", 2)


def _vm_size(src: SourceFile, draft: ComputeDraft, report: Report) -> None:
    raw = src.get("vmSize")
    field_path = src.field("vmSize")
    if not isinstance(raw, str) or not raw:
        draft.body["vm_size"] = PLACEHOLDER_CPU_SIZE
        yamldoc.note(draft.body, "vm_size", "placeholder: the cluster file names no vmSize", 2)
        report.add(src.name, field_path, Outcome.ACTION, f"{draft.target}.vm_size",
                   f"the file names no vmSize; {PLACEHOLDER_CPU_SIZE} is a placeholder: "
                   "write the size the cluster had")
        return  # gpus stays unknown: the size is a placeholder
    size = vmsizes.lookup(raw)
    if size is None:
        draft.body["vm_size"] = raw
        yamldoc.note(draft.body, "vm_size", f"{field_path} (not in amlctl's catalogue)", 2)
        report.add(src.name, field_path, Outcome.ACTION, f"{draft.target}.vm_size",
                   f"{raw} is not in amlctl's VM size catalogue: check that Azure ML offers "
                   "it in your region")
        return
    draft.gpus = size.gpus
    draft.body["vm_size"] = size.name
    spelled = f" (written {raw})" if raw != size.name else ""
    if size.retired:
        text = (f"{field_path}{spelled}. The {size.series} series was retired on "
                f"{size.retired}: Azure no longer creates it. Move to {size.successor}.")
        yamldoc.note(draft.body, "vm_size", text, 2)
        report.add(src.name, field_path, Outcome.ACTION, f"{draft.target}.vm_size",
                   f"{size.name} belongs to the {size.series} series, retired on "
                   f"{size.retired}: change vm_size to {size.successor}")
    else:
        yamldoc.note(draft.body, "vm_size", field_path, 2)
        report.add(src.name, field_path, Outcome.MAPPED, f"{draft.target}.vm_size",
                   f"{size.name}{spelled}")


def _priority(src: SourceFile, draft: ComputeDraft, report: Report) -> None:
    raw = src.get("vmPriority")
    if raw is None:
        return
    value = str(raw).replace("_", "").replace("-", "").lower()
    if value not in ("dedicated", "lowpriority"):
        report.add(src.name, src.field("vmPriority"), Outcome.ACTION, None,
                   f"unknown priority {raw!r}: set vm_priority to dedicated or lowpriority")
        return
    draft.body["vm_priority"] = value
    yamldoc.note(draft.body, "vm_priority", src.field("vmPriority"), 2)
    report.add(src.name, src.field("vmPriority"), Outcome.MAPPED,
               f"{draft.target}.vm_priority")


def _scale(src: SourceFile, draft: ComputeDraft, report: Report) -> None:
    body = draft.body
    manual = src.get("scaleSettings", "manual")
    auto = src.get("scaleSettings", "autoScale")
    if isinstance(manual, dict):
        target = _int(manual.get("targetNodeCount"), 0)
        field_path = src.field("scaleSettings", "manual", "targetNodeCount")
        body["min_nodes"] = target
        body["max_nodes"] = max(target, 1)
        draft.max_nodes_given = target >= 1
        if target >= 1:
            yamldoc.note(body, "min_nodes",
                         f"{field_path}: Batch AI kept this many nodes (manual scale). "
                         "AmlCompute autoscales by default; min_nodes = max_nodes keeps the "
                         "cluster at a fixed size. Lower min_nodes to 0 to pay only while "
                         "runs are active.", 2)
            report.add(src.name, field_path, Outcome.MAPPED,
                       f"{draft.target}.min_nodes, {draft.target}.max_nodes",
                       "manual scale: min_nodes = max_nodes; AmlCompute autoscales by default "
                       "where Batch AI did not")
        else:
            yamldoc.note(body, "min_nodes", f"{field_path} was 0 (no nodes kept)", 2)
            report.add(src.name, field_path, Outcome.MAPPED,
                       f"{draft.target}.min_nodes",
                       "0 nodes: min_nodes 0; max_nodes comes from the jobs (at least 1)")
        if "nodeDeallocationOption" in manual:
            report.add(src.name, src.field("scaleSettings", "manual", "nodeDeallocationOption"),
                       Outcome.DROPPED, None,
                       "AmlCompute only removes idle nodes (after "
                       "idle_seconds_before_scaledown); running jobs are never requeued")
    elif isinstance(auto, dict):
        low = _int(auto.get("minimumNodeCount"), 0)
        high = _int(auto.get("maximumNodeCount"), 1)
        body["min_nodes"] = low
        body["max_nodes"] = max(high, 1, low)
        draft.max_nodes_given = True
        for key, target in (("minimumNodeCount", "min_nodes"), ("maximumNodeCount", "max_nodes")):
            if key in auto:
                path = src.field("scaleSettings", "autoScale", key)
                yamldoc.note(body, target, path, 2)
                report.add(src.name, path, Outcome.MAPPED, f"{draft.target}.{target}")
        if "initialNodeCount" in auto:
            report.add(src.name, src.field("scaleSettings", "autoScale", "initialNodeCount"),
                       Outcome.DROPPED, None, "AmlCompute starts at min_nodes and scales with "
                       "the queue")
    else:
        body["min_nodes"] = 0
        body["max_nodes"] = 1
        known = src.get("scaleSettings") is None
        yamldoc.note(body, "max_nodes", "no scaleSettings in the file" if known else
                     "scaleSettings not understood", 2)
        report.add(src.name, src.field("scaleSettings"), Outcome.ACTION,
                   f"{draft.target}.max_nodes",
                   ("the file has no scale settings" if known else
                    "the scale settings have neither manual nor autoScale")
                   + ": min_nodes is 0 and max_nodes fits the converted jobs (at least 1); "
                   "set the size you want")


def _image(src: SourceFile, draft: ComputeDraft, report: Report) -> None:
    config = src.get("virtualMachineConfiguration")
    if config is None:
        return
    image = src.get("virtualMachineConfiguration", "imageReference")
    if isinstance(image, dict):
        what = image.get("virtualMachineImageId") or ":".join(
            str(image.get(k, "")) for k in ("publisher", "offer", "sku", "version") if k in image)
        report.add(src.name, src.field("virtualMachineConfiguration"), Outcome.ACTION, None,
                   f"custom node image {what}: AmlCompute nodes run Microsoft's image; put "
                   "the software you need in a docker image (runs' environment.docker_image)")
    else:
        report.add(src.name, src.field("virtualMachineConfiguration"), Outcome.DROPPED, None,
                   "no image given: AmlCompute uses its own node image")


def _user_account(src: SourceFile, draft: ComputeDraft, report: Report) -> None:
    account = src.get("userAccountSettings")
    if not isinstance(account, dict):
        return
    body = draft.body
    if "adminUserName" in account:
        body["admin_username"] = str(account["adminUserName"])
        yamldoc.note(body, "admin_username", src.field("userAccountSettings", "adminUserName"), 2)
        report.add(src.name, src.field("userAccountSettings", "adminUserName"), Outcome.MAPPED,
                   f"{draft.target}.admin_username",
                   "AmlCompute creates this user for SSH access to the nodes")
    if "adminUserSshPublicKey" in account:
        body["admin_user_ssh_key"] = str(account["adminUserSshPublicKey"])
        yamldoc.note(body, "admin_user_ssh_key",
                     src.field("userAccountSettings", "adminUserSshPublicKey"), 2)
        report.add(src.name, src.field("userAccountSettings", "adminUserSshPublicKey"),
                   Outcome.MAPPED, f"{draft.target}.admin_user_ssh_key",
                   "a public key: not a secret")
    if "adminUserPassword" in account:
        var = re.sub(r"[^A-Z0-9]+", "_", draft.name.upper()).strip("_") + "_ADMIN_PASSWORD"
        body["admin_user_password"] = f"{{{{ secret_env('{var}') }}}}"
        yamldoc.note(body, "admin_user_password", "read from the environment, never stored", 2)
        report.add(src.name, src.field("userAccountSettings", "adminUserPassword"),
                   Outcome.ACTION, f"{draft.target}.admin_user_password",
                   f"the password in the file is not copied: set {var} in the environment "
                   "(or drop it and use an SSH key)")


def _subnet(src: SourceFile, draft: ComputeDraft, report: Report) -> None:
    subnet = src.get("subnet")
    if subnet is None:
        return
    subnet_id = subnet.get("id", "") if isinstance(subnet, dict) else str(subnet)
    match = _SUBNET_ID.search(subnet_id)
    field_path = src.field("subnet", "id") if isinstance(subnet, dict) else src.field("subnet")
    if not match:
        report.add(src.name, src.field("subnet"), Outcome.ACTION, None,
                   f"subnet id {subnet_id!r} not understood: set vnet (resource_group, name, "
                   "subnet) by hand")
        return
    draft.body["vnet"] = yamldoc.mapping(
        {"resource_group": match.group("rg"), "name": match.group("vnet"),
         "subnet": match.group("subnet")}, flow=True)
    yamldoc.note(draft.body, "vnet", field_path, 2)
    report.add(src.name, field_path, Outcome.MAPPED, f"{draft.target}.vnet",
               "resource group, virtual network and subnet read from the subnet id")


def _node_setup(src: SourceFile, draft: ComputeDraft, storage: Storage,
                report: Report) -> None:
    setup = src.get("nodeSetup")
    if not isinstance(setup, dict):
        return
    task = setup.get("setupTask")
    if isinstance(task, dict):
        _setup_task(src, task, report)
    if isinstance(setup.get("mountVolumes"), dict):
        draft.mounts = storage.read_mounts(src, "nodeSetup", "mountVolumes")
        storage.report_mounts(draft.mounts, src, ("nodeSetup", "mountVolumes"),
                              cluster_level=True)
    if "performanceCountersSettings" in setup:
        report.add(src.name, src.field("nodeSetup", "performanceCountersSettings"),
                   Outcome.DROPPED, None,
                   "Azure ML sends node and run metrics to the workspace's Application "
                   "Insights; the instrumentation key is not copied")


def _setup_task(src: SourceFile, task: dict[str, Any], report: Report) -> None:
    command = task.get("commandLine", "")
    env_names = [str(v.get("name")) for v in task.get("environmentVariables") or []
                 if isinstance(v, dict)]
    secret_names = [str(v.get("name")) for v in task.get("secrets") or [] if isinstance(v, dict)]
    extra = ""
    if env_names:
        extra += f"; it used the variables {', '.join(env_names)}"
    if secret_names:
        extra += (f" and the secrets {', '.join(secret_names)} (values not copied: pass them "
                  "to runs as environment.env_vars with secret_env)")
    report.add(src.name, src.field("nodeSetup", "setupTask"), Outcome.ACTION, None,
               f"AmlCompute has no node setup task: put what `{command}` installs in a docker "
               f"image (runs' environment.docker_image) or at the start of the job{extra}")


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
