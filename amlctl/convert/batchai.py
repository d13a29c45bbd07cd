"""`convert_batchai`: Batch AI cluster and job files -> an amlctl manifest and a report.

The pieces: `sources` reads the files, `batchai_cluster` and `batchai_job` map them,
`storage` turns mount volumes into datastores, `report` records every field's fate. This
module names things, places jobs on computes, fills in the workspace and assembles the
commented document.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

from ruamel.yaml.comments import CommentedMap

from amlctl.convert import names, yamldoc
from amlctl.convert.batchai_cluster import ComputeDraft, convert_cluster, placeholder_compute
from amlctl.convert.batchai_cluster import set_max_nodes as grow_max_nodes
from amlctl.convert.batchai_job import JobConverter, RunDraft
from amlctl.convert.errors import ConvertError
from amlctl.convert.report import Outcome, Report, SourceSummary
from amlctl.convert.sources import SourceFile, format_path, load_source
from amlctl.convert.storage import Storage

GENERAL = "(conversion)"  # the report's source for what no input file says
DEFAULT_WORKSPACE = "batchai-migration"
PLACEHOLDER_LOCATION = "westeurope"
ZERO_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"

_CLUSTER_ID = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<rg>[^/]+)/providers/Microsoft\.BatchAI"
    r"/workspaces?/(?P<ws>[^/]+)/clusters/(?P<cluster>[^/]+)$",
    re.IGNORECASE,
)


@dataclass
class Conversion:
    """The result: the manifest (a commented ruamel mapping) and the migration report."""

    manifest: CommentedMap
    report: Report

    def to_yaml(self) -> str:
        """The manifest as YAML text, comments included."""
        return yamldoc.dump(self.manifest)


@dataclass
class _Hints:
    """Workspace facts the inputs reveal (cluster resource ids, legacy `location`)."""

    subscription_id: str | None = None
    resource_group: str | None = None
    workspace: str | None = None
    location: str | None = None
    location_from: str | None = None  # "FILE FIELD"


def convert_batchai(
    clusters: list[Path],
    jobs: list[Path],
    *,
    workspace: str | None = None,
    resource_group: str | None = None,
    location: str | None = None,
    subscription_id: str | None = None,
    compat: bool = True,
) -> Conversion:
    """Convert Batch AI cluster and job files into one manifest and its report.

    `compat=False` drops the Batch AI host and task-index flags and never sets
    `compat: batchai` (for scripts that already read TF_CONFIG and Azure ML's variables).
    Raises ConvertError when an input cannot be read.
    """
    if not clusters and not jobs:
        raise ConvertError("nothing to convert: give at least one --cluster FILE or --job FILE")
    cluster_files = [load_source(Path(p), "cluster") for p in clusters]
    job_files = [load_source(Path(p), "job") for p in jobs]
    cluster_files, job_files = _distinct_labels(cluster_files, job_files)
    report = Report()
    storage = Storage(report)
    hints = _Hints()

    computes: list[ComputeDraft] = []
    for src in cluster_files:
        batchai_name = _envelope_name(src) or _stem_name(src.path)
        name = _name(src, batchai_name, names.COMPUTE, [c.name for c in computes], report,
                     "computes")
        computes.append(convert_cluster(src, name, batchai_name, storage, report))
        _envelope(src, hints, report, f"computes.{name}")
        report.sources.append(SourceSummary(src.name, "cluster", f"computes.{name}"))

    runs: list[RunDraft] = []
    placed: dict[str, list[RunDraft]] = {}
    for src in job_files:
        batchai_name = _envelope_name(src) or _stem_name(src.path)
        run_name = _name(src, batchai_name, names.RUN, [r.name for r in runs], report, "runs")
        experiment = _experiment(src, batchai_name, report, f"runs.{run_name}")
        compute = _place(src, run_name, computes, hints, report)
        draft = JobConverter(src, run_name, experiment, compute, storage, report,
                             compat).convert()
        runs.append(draft)
        placed.setdefault(compute.name, []).append(draft)
        _envelope(src, hints, report, f"runs.{run_name}")
        report.sources.append(SourceSummary(src.name, "job", f"runs.{run_name}"))

    for compute in computes:
        on_it = placed.get(compute.name, [])
        if on_it:
            grow_max_nodes(compute, max(r.node_count for r in on_it), report,
                           [r.name for r in on_it])

    if storage.uses_placeholders:
        report.add(GENERAL, "<AZURE_BATCHAI_STORAGE_ACCOUNT>", Outcome.ACTION, "datastores",
                   "the files use az batchai's storage placeholders: set "
                   "AZURE_BATCHAI_STORAGE_ACCOUNT and AZURE_BATCHAI_STORAGE_KEY (as for az "
                   "batchai) before plan and apply, or write the account name into the "
                   "manifest")
    for src in cluster_files + job_files:
        _account_for_the_rest(src, report)
        _sort_entries(src, report)
    document = _document(computes, storage, runs, _workspace(
        hints, report, workspace=workspace, resource_group=resource_group, location=location,
        subscription_id=subscription_id), cluster_files + job_files)
    return Conversion(document, report)


# names -------------------------------------------------------------------------------------

def _distinct_labels(clusters: list[SourceFile], jobs: list[SourceFile]
                     ) -> tuple[list[SourceFile], list[SourceFile]]:
    """Inputs that share a file name (team-a/job.json, team-b/job.json) go by their path."""
    counts = Counter(s.path.name for s in clusters + jobs)
    if all(n == 1 for n in counts.values()):
        return clusters, jobs

    def label(src: SourceFile) -> SourceFile:
        return replace(src, label=src.path.as_posix()) if counts[src.path.name] > 1 else src

    return [label(s) for s in clusters], [label(s) for s in jobs]


def _stem_name(path: Path) -> str:
    """A resource name from a file name: `Horovod__Horovod-PyTorch.job.json` -> Horovod-PyTorch.

    Files named `<collection>__<name>` (as in the recipes collection) keep the part after the
    last `__`; `.job` and `.cluster` markers go.
    """
    stem = path.name
    for suffix in (".json", ".JSON"):
        stem = stem.removesuffix(suffix)
    stem = stem.rsplit("__", 1)[-1]
    stem = re.sub(r"\.(job|cluster)(?=$|[._-])", "", stem, flags=re.IGNORECASE)
    stem = re.sub(r"^(job|cluster)[._-]", "", stem, flags=re.IGNORECASE) or stem
    return stem or path.stem


def _envelope_name(src: SourceFile) -> str | None:
    name = src.envelope("name")
    return str(name).rsplit("/", 1)[-1] if isinstance(name, str) and name else None


def _name(src: SourceFile, wanted: str, rule: names.NameRule, taken: list[str],
          report: Report, section: str) -> str:
    name = names.unique(names.sanitise(wanted, rule), taken, rule)
    if name != wanted:
        report.add(src.name, "(name)", Outcome.MAPPED, f"{section}.{name}",
                   f"named {name!r} after {wanted!r}: {rule.kind} names are "
                   f"{rule.description}", remark=True)
    return name


def _experiment(src: SourceFile, fallback: str, report: Report, target: str) -> str:
    field_path = None
    raw = src.get("experimentName")
    if raw is not None:
        field_path = src.field("experimentName")
    elif src.envelope("experimentName") is not None:
        raw, field_path = src.envelope("experimentName"), "experimentName"
    wanted = str(raw) if raw else fallback
    name = names.sanitise(wanted, names.EXPERIMENT)
    if field_path:
        renamed = f" (renamed from {wanted!r})" if name != wanted else ""
        report.add(src.name, field_path, Outcome.MAPPED, f"{target}.experiment",
                   f"experiment {name}{renamed}")
    elif name != wanted:
        report.add(src.name, "(name)", Outcome.MAPPED, f"experiments.{name}",
                   f"experiment named {name!r} after {wanted!r}: experiment names are "
                   f"{names.EXPERIMENT.description}", remark=True)
    return name


# placing jobs ------------------------------------------------------------------------------

def _place(src: SourceFile, run_name: str, computes: list[ComputeDraft], hints: _Hints,
           report: Report) -> ComputeDraft:
    """The compute a job runs on: its cluster if converted too, else a placeholder."""
    target = f"runs.{run_name}.compute"
    cluster_id = src.get("cluster", "id")
    wanted = None
    if isinstance(cluster_id, str):
        match = _CLUSTER_ID.match(cluster_id)
        if match:
            hints.subscription_id = hints.subscription_id or match.group("sub")
            hints.resource_group = hints.resource_group or match.group("rg")
            hints.workspace = hints.workspace or match.group("ws")
            wanted = match.group("cluster")
        else:
            wanted = cluster_id.rstrip("/").rsplit("/", 1)[-1] or None
    # Recipes omit `cluster` (az batchai took it from a flag): the report still names the field.
    field_path = src.field("cluster")
    real = [c for c in computes if c.source is not None]
    for compute in computes:
        if wanted and wanted.lower() in {(compute.batchai_name or "").lower(),
                                         compute.name.lower()}:
            report.add(src.name, field_path, Outcome.MAPPED, target,
                       f"cluster {wanted} is compute {compute.name}",
                       remark=src.get("cluster") is None)
            return compute
    if len(real) == 1:
        report.add(src.name, field_path, Outcome.MAPPED, target,
                   f"runs on {real[0].name}, the one cluster converted"
                   + (f" (the job named cluster {wanted})" if wanted else ""),
                   remark=src.get("cluster") is None)
        return real[0]
    if real:
        report.add(src.name, field_path, Outcome.ACTION, target,
                   f"several clusters were converted and the job names none of them: placed "
                   f"on {real[0].name}; change compute if it ran elsewhere",
                   remark=src.get("cluster") is None)
        return real[0]
    gpu = _looks_gpu(src)
    name = names.sanitise(wanted, names.COMPUTE) if wanted else (
        "gpu-cluster" if gpu else "cpu-cluster")
    for compute in computes:
        if compute.name == name:
            report.add(src.name, field_path, Outcome.ACTION, target,
                       f"no cluster file given: runs on the placeholder compute {name}",
                       remark=src.get("cluster") is None)
            return compute
    compute = placeholder_compute(name, wanted, gpu)
    computes.append(compute)
    report.add(src.name, field_path, Outcome.ACTION, f"computes.{name}",
               f"no cluster file given: computes.{name} is a placeholder "
               f"({compute.body['vm_size']}); convert the cluster too (--cluster) or set its "
               "vm_size and node counts", remark=src.get("cluster") is None)
    return compute


def _looks_gpu(src: SourceFile) -> bool:
    image = src.get("containerSettings", "imageSourceRegistry", "image")
    return isinstance(image, str) and bool(re.search(r"gpu|cuda", image, re.IGNORECASE))


# envelope and leftovers --------------------------------------------------------------------

def _envelope(src: SourceFile, hints: _Hints, report: Report, target: str) -> None:
    """Fields around the definition: $schema, legacy location, ARM name/type/apiVersion."""
    raw = src.raw
    if "$schema" in raw:
        report.add(src.name, "$schema", Outcome.DROPPED, None,
                   f"read as Batch AI API {src.api_version}")
    place = ("location" if "location" in raw else
             src.field("location") if "location" in src.props else None)
    if place is not None:
        value = raw.get("location") if "location" in raw else src.props.get("location")
        if hints.location is None:
            hints.location = str(value)
            hints.location_from = f"{src.name} {place}"
            report.add(src.name, place, Outcome.MAPPED, "workspace.location",
                       "legacy top-level location: the workspace's region (unless --location)")
        elif str(value) != hints.location:
            report.add(src.name, place, Outcome.ACTION, "workspace.location",
                       f"{value} differs from {hints.location} ({hints.location_from}): one "
                       "workspace has one region; clusters follow it")
        else:
            report.add(src.name, place, Outcome.MAPPED, "workspace.location")
    if src.prefix:
        if "name" in raw:
            report.add(src.name, "name", Outcome.MAPPED, target, "the resource's name")
        for key in ("type", "apiVersion", "id", "tags"):
            if key in raw:
                report.add(src.name, key, Outcome.DROPPED, None,
                           "ARM envelope: amlctl addresses resources by name")


def _account_for_the_rest(src: SourceFile, report: Report) -> None:
    """Every field no converter spoke for gets an entry: nothing disappears unreported.

    An unknown subtree gets one entry at its top, not one per leaf; the file itself and its
    `properties` wrapper are never reported whole.
    """
    done: list[str] = []
    for parts, leaves in src.walk():
        if parts in ((), ("properties",)):
            continue
        path = format_path(parts)
        if any(path == d or path.startswith(d + ".") or path.startswith(d + "[") for d in done):
            continue
        if any(report.covered(src.name, leaf) for leaf in leaves):
            continue
        done.append(path)
        report.add(src.name, path, Outcome.ACTION, None,
                   "not understood by the converter: no Azure ML equivalent known; check it "
                   "by hand")


def _sort_entries(src: SourceFile, report: Report) -> None:
    """Entries of a file in the order its fields appear, general remarks last."""
    order = {leaf: index for index, leaf in enumerate(src.leaf_paths())}

    def rank(field_path: str) -> int:
        if field_path in order:
            return order[field_path]
        below = [i for leaf, i in order.items()
                 if leaf.startswith(field_path + ".") or leaf.startswith(field_path + "[")]
        return min(below) if below else len(order)

    mine = [e for e in report.entries if e.source == src.name]
    others = [e for e in report.entries if e.source != src.name]
    mine.sort(key=lambda e: rank(e.field))
    report.entries[:] = others + mine


# the document ------------------------------------------------------------------------------

def _workspace(hints: _Hints, report: Report, *, workspace: str | None,
               resource_group: str | None, location: str | None,
               subscription_id: str | None) -> CommentedMap:
    body = yamldoc.mapping()
    wanted = workspace or hints.workspace or DEFAULT_WORKSPACE
    name = names.sanitise(wanted, names.WORKSPACE)
    body["name"] = name
    if workspace is None:
        origin = "the Batch AI workspace of the jobs' cluster" if hints.workspace else "a default"
        yamldoc.note(body, "name", f"{origin}; --workspace sets it", 1)
        report.add(GENERAL, "--workspace", Outcome.ACTION, "workspace.name",
                   f"not given: {name} ({origin}); name your Azure ML workspace")
    elif name != wanted:
        report.add(GENERAL, "--workspace", Outcome.MAPPED, "workspace.name",
                   f"named {name!r} after {wanted!r}: workspace names are "
                   f"{names.WORKSPACE.description}")
    if subscription_id:
        body["subscription_id"] = subscription_id
    else:
        default = hints.subscription_id or ZERO_SUBSCRIPTION
        body["subscription_id"] = f"{{{{ env('AZURE_SUBSCRIPTION_ID', '{default}') }}}}"
        report.add(GENERAL, "--subscription-id", Outcome.ACTION, "workspace.subscription_id",
                   "not given: read from AZURE_SUBSCRIPTION_ID at plan time"
                   + (" (default: the one in the job's cluster id)" if hints.subscription_id
                      else ""))
    body["resource_group"] = resource_group or hints.resource_group or f"{name}-rg"
    if not resource_group:
        origin = ("the Batch AI cluster's resource group" if hints.resource_group
                  else "a default")
        yamldoc.note(body, "resource_group", f"{origin}; --resource-group sets it", 1)
        report.add(GENERAL, "--resource-group", Outcome.ACTION, "workspace.resource_group",
                   f"not given: {body['resource_group']} ({origin})")
    body["location"] = location or hints.location or PLACEHOLDER_LOCATION
    if not location and not hints.location:
        yamldoc.note(body, "location", "placeholder: --location sets it", 1)
        report.add(GENERAL, "--location", Outcome.ACTION, "workspace.location",
                   f"not given and no input names a region: {PLACEHOLDER_LOCATION} is a "
                   "placeholder")
    elif not location:
        yamldoc.note(body, "location", f"from {hints.location_from}", 1)
    return body


def _document(computes: list[ComputeDraft], storage: Storage, runs: list[RunDraft],
              workspace: CommentedMap, sources: list[SourceFile]) -> CommentedMap:
    doc = yamldoc.mapping()
    doc["version"] = 1
    doc["name"] = workspace["name"]
    doc["backend"] = "local"
    yamldoc.note(doc, "backend", "try the stack on this machine first; `--backend azure` (or "
                 "backend: azure) creates it in Azure", 0)
    doc["workspace"] = workspace
    if computes:
        doc["computes"] = yamldoc.mapping({c.name: c.body for c in computes})
        for compute in computes:
            origin = (f"from {compute.source.name}" if compute.source else
                      "placeholder: no cluster file was given")
            yamldoc.note(doc["computes"], compute.name, origin, 1)
    datastores = storage.datastore_map()
    if datastores:
        doc["datastores"] = yamldoc.mapping(
            {name: yamldoc.mapping(body) for name, body in datastores.items()})
        for store in storage.datastores:
            yamldoc.note(doc["datastores"], store.name, f"from {store.origin}", 1)
    if runs:
        doc["experiments"] = yamldoc.mapping(
            {name: yamldoc.mapping() for name in dict.fromkeys(r.experiment for r in runs)})
        doc["runs"] = yamldoc.mapping({r.name: r.body for r in runs})
        by_name = {r.name: s for r, s in zip(runs, [s for s in sources if s.kind == "job"],
                                             strict=True)}
        for run in runs:
            yamldoc.note(doc["runs"], run.name, f"from {by_name[run.name].name}", 1)
    listed = ", ".join(s.name for s in sources)
    yamldoc.header(doc, "Converted from Batch AI by `amlctl convert batchai` (" + listed + ").\n"
                   "Comments name the Batch AI field each value came from. The migration "
                   "report lists every field, what became of it and what is left to do. "
                   "Check with `amlctl validate`, then `amlctl plan`.")
    return doc
