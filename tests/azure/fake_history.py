"""The run history side of the fake Azure ML region host, as azureml-core talks to it.

Served for `FakeAzure` under the workspace scope `/subscriptions/S/resourceGroups/G/providers/
Microsoft.MachineLearningServices/workspaces/W`:
- history (`/history/v1.0`): experiments (get / create / by id / `experiments:query` / tag
  PATCH / `tags:delete`), runs (get / PATCH / details / `runs:query` with the SDK's OData
  filters, workspace-level get by id, cancel through the run's `cancelUri`);
- content (`/content/v2.0`): snapshot upload (`snapshots/getblob` hands out SAS URLs of the
  workspace storage, then `POST snapshots/ID`);
- execution (`/execution/v1.0`): `snapshotrun` starts a run; a client-chosen `runId` that
  already exists is refused with 409, as the service does;
- metrics (`/metric/v2.0`): a run's metric names (`runs/ID/list`) and each metric's values
  with their steps (`runs/ID/full`), what `Run.get_metrics()` reads; a test logs values with
  `log_metric`, as a job's `mlflow.log_metric` (through azureml-mlflow) records them.

Routes are a table (`RunHistory.ROUTES`, method + regex after the workspace scope): a new
route is one line there and one method. Runs move through statuses the fake drives: each read
of a run (get, details, a query that returns it) takes the next status of its script
(`run_script`, default Queued -> Running -> Completed), the way time passes between reads of
the real service; `fail_runs` scripts a failure with an error body; `hold_runs` keeps new runs
NotStarted; `set_status` moves one by hand. Each process of a run (ps_0, worker_0, ...) writes a
log into the workspace storage once it runs (the fake's own blob emulation, or Azurite when
`FakeAzure.default_storage` says so), listed by the artifact service with SAS URLs, as the
common runtime does; snapshot files are uploaded there by SAS too.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fake_service import Call, FakeAzure, Workspace

Response = tuple[int, dict[str, str], bytes]
TERMINAL = ("Completed", "Failed", "Canceled")
LOG_CONTAINER = "azureml"


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _iso(value: dt.datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


@dataclass
class ExperimentRecord:
    """An experiment of one workspace."""

    id: str
    name: str
    tags: dict[str, str]
    created: dt.datetime
    archived: dt.datetime | None = None

    def dto(self) -> dict[str, Any]:
        return {"experimentId": self.id, "name": self.name, "description": None,
                "createdUtc": _iso(self.created), "archivedTime": _iso(self.archived),
                "tags": dict(self.tags)}


@dataclass
class RunRecord:
    """A run as the run history service keeps it."""

    id: str
    experiment: ExperimentRecord
    number: int
    status: str
    created: dt.datetime
    tags: dict[str, str] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)
    definition: dict[str, Any] = field(default_factory=dict)
    target: str | None = None
    script_name: str | None = None
    started: dt.datetime | None = None
    ended: dt.datetime | None = None
    error: dict[str, Any] | None = None
    script: list[str] = field(default_factory=list)  # statuses still to come, one per read
    logs: dict[str, str] = field(default_factory=dict)  # log file name -> blob name
    metrics: dict[str, list[tuple[int, float]]] = field(default_factory=dict)  # (step, value)
    run_uuid: str = field(default_factory=lambda: str(uuid.uuid4()))


class RunHistory:
    """Experiments, snapshots and runs of every workspace of one `FakeAzure`."""

    # (method, path after the workspace scope) -> handler name; groups are the handler's args
    ROUTES: list[tuple[str, str, str]] = [
        ("POST", r"/history/v1\.0/experiments:query", "_experiments_query"),
        ("GET", r"/history/v1\.0/experiments/([^/]+)", "_experiment_get"),
        ("POST", r"/history/v1\.0/experiments/([^/]+)", "_experiment_create"),
        ("GET", r"/history/v1\.0/experimentids/([^/]+)", "_experiment_by_id"),
        ("PATCH", r"/history/v1\.0/experimentids/([^/]+)", "_experiment_update"),
        ("DELETE", r"/history/v1\.0/experimentids/([^/]+)/tags:delete", "_experiment_untag"),
        ("POST", r"/history/v1\.0/experimentids/([^/]+)/tags:delete", "_experiment_untag"),
        ("POST", r"/history/v1\.0/experiments/([^/]+)/runs:query", "_runs_query"),
        ("GET", r"/history/v1\.0/experiments/([^/]+)/runs/([^/]+)", "_run_get"),
        ("PATCH", r"/history/v1\.0/experiments/([^/]+)/runs/([^/]+)", "_run_patch"),
        ("GET", r"/history/v1\.0/experiments/([^/]+)/runs/([^/]+)/details", "_run_details"),
        ("GET", r"/history/v1\.0/experimentids/([^/]+)/runs/([^/]+)", "_run_get_by_exp_id"),
        ("PATCH", r"/history/v1\.0/experimentids/([^/]+)/runs/([^/]+)", "_run_patch_by_exp_id"),
        ("GET", r"/history/v1\.0/runs/([^/]+)", "_run_in_workspace"),
        ("GET", r"/history/v1\.0/experiments/([^/]+)/runs/([^/]+)/metricsingest/wait",
         "_metrics_ingest_wait"),
        ("POST", r"/execution/v1\.0/experiments/([^/]+)/runId/([^/]+)/cancel", "_run_cancel"),
        ("GET", r"/content/v1\.0/snapshots/latest/metadata", "_snapshot_latest"),
        ("POST", r"/content/v2\.0/snapshots/getblob", "_snapshot_blobs"),
        ("GET", r"/artifact/v2\.0/artifacts/prefix/contentinfo/([^/]+)/([^/]+)/(.+)",
         "_artifacts_by_prefix"),
        ("POST", r"/content/v2\.0/snapshots/([^/]+)", "_snapshot_create"),
        ("POST", r"/execution/v1\.0/experiments/([^/]+)/snapshotrun", "_start_run"),
        ("POST", r"/metric/v2\.0/runs/([^/]+)/list", "_metrics_list"),
        ("POST", r"/metric/v2\.0/runs/([^/]+)/full", "_metrics_full"),
    ]

    def __init__(self, service: FakeAzure) -> None:
        self.service = service
        # workspace arm id (lower) -> experiment name (lower) -> record
        self.experiments: dict[str, dict[str, ExperimentRecord]] = {}
        self.runs: dict[str, dict[str, RunRecord]] = {}  # workspace -> run id -> run
        self.snapshots: dict[str, dict[str, Any]] = {}  # snapshot id -> what was posted
        self.latest_snapshot: dict[str, str] = {}  # workspace -> snapshot id
        self.reset()

    def reset(self) -> None:
        """Forget everything and restore the default knobs."""
        self.experiments.clear()
        self.runs.clear()
        self.snapshots.clear()
        self.latest_snapshot.clear()
        self.made_containers: set[tuple[str, str]] = set()
        self.run_script: list[str] = ["Queued", "Running", "Running", "Completed"]
        self.fail_runs: str | None = None  # an error message: runs end Failed with it
        self.hold_runs = False  # runs stay Queued until a test moves them
        self.cancel_delay_reads = 0  # reads a run stays CancelRequested after a cancel

    # -- entry -----------------------------------------------------------------------------------

    @staticmethod
    def serves(path: str) -> bool:
        return bool(re.search(r"^/(history|content|execution|artifact|metric)/v[12]\.0/", path))

    def handle(self, call: Call, ws: Workspace, rest: str) -> Response:
        """Route `rest` (the path after the workspace scope)."""
        from fake_service import ServiceError

        for method, pattern, handler in self.ROUTES:
            m = re.fullmatch(pattern, rest)
            if m and method == call.method:
                args = [urllib.parse.unquote(g) for g in m.groups()]
                return getattr(self, handler)(call, ws, *args)
        raise ServiceError(404, "NotFound", f"No route for {call.method} {call.path}")

    # -- helpers ---------------------------------------------------------------------------------

    def _json(self, status: int, obj: Any) -> Response:
        return self.service._json(status, obj)

    def _error(self, status: int, code: str, message: str) -> Exception:
        from fake_service import ServiceError

        return ServiceError(status, code, message)

    def _exps(self, ws: Workspace) -> dict[str, ExperimentRecord]:
        return self.experiments.setdefault(ws.arm_id.lower(), {})

    def _runs(self, ws: Workspace) -> dict[str, RunRecord]:
        return self.runs.setdefault(ws.arm_id.lower(), {})

    def _experiment(self, ws: Workspace, name: str) -> ExperimentRecord:
        exp = self._exps(ws).get(name.lower())
        if exp is None:
            raise self._error(404, "UserError", f"Experiment {name} not found in workspace "
                              f"{ws.name}")
        return exp

    def _experiment_id(self, ws: Workspace, exp_id: str) -> ExperimentRecord:
        for exp in self._exps(ws).values():
            if exp.id == exp_id:
                return exp
        raise self._error(404, "UserError", f"Experiment with id {exp_id} not found")

    def _run(self, ws: Workspace, run_id: str) -> RunRecord:
        run = self._runs(ws).get(run_id)
        if run is None:
            raise self._error(404, "UserError", f"Run {run_id} was not found")
        return run

    def add_experiment(self, ws: Workspace, name: str,
                       tags: dict[str, str] | None = None) -> ExperimentRecord:
        """Create an experiment (as a run submission or `Experiment(ws, name)` would)."""
        exps = self._exps(ws)
        exp = exps.get(name.lower())
        if exp is None:
            exp = ExperimentRecord(str(uuid.uuid4()), name, dict(tags or {}), _now())
            exps[name.lower()] = exp
        return exp

    # -- experiments -----------------------------------------------------------------------------

    def _experiments_query(self, call: Call, ws: Workspace) -> Response:
        body = call.json() or {}
        view = (call.query.get("viewType") or body.get("viewType") or "ActiveOnly").lower()
        found = [e for e in self._exps(ws).values()
                 if view == "all" or (view == "activeonly") == (e.archived is None)]
        predicate = _odata_filter(body.get("filter"))
        found = [e for e in found if predicate({"name": e.name, "tags": e.tags})]
        return self._paged(call, body, [e.dto() for e in sorted(found, key=lambda e: e.created)])

    def _paged(self, call: Call, body: dict[str, Any], items: list[Any]) -> Response:
        top = int(body.get("top") or call.query.get("top") or 100)
        start = int(body.get("continuationToken") or 0)
        page = items[start:start + top]
        token = str(start + top) if start + top < len(items) else None
        return self._json(200, {"value": page, "continuationToken": token})

    def _experiment_get(self, call: Call, ws: Workspace, name: str) -> Response:
        return self._json(200, self._experiment(ws, name).dto())

    def _experiment_create(self, call: Call, ws: Workspace, name: str) -> Response:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{0,254}", name):
            raise self._error(400, "UserError", f"Experiment name {name!r} is invalid: use "
                              "letters, digits, underscores and hyphens (at most 255).")
        if name.lower() in self._exps(ws):
            raise self._error(409, "UserError", f"Experiment {name} already exists")
        return self._json(200, self.add_experiment(ws, name).dto())

    def _experiment_by_id(self, call: Call, ws: Workspace, exp_id: str) -> Response:
        return self._json(200, self._experiment_id(ws, exp_id).dto())

    def _experiment_update(self, call: Call, ws: Workspace, exp_id: str) -> Response:
        exp = self._experiment_id(ws, exp_id)
        body = call.json() or {}
        if body.get("tags"):
            exp.tags.update({str(k): str(v) for k, v in body["tags"].items()})
        if body.get("archive") is True:
            exp.archived = _now()
        elif body.get("archive") is False:
            exp.archived = None
        return self._json(200, exp.dto())

    def _experiment_untag(self, call: Call, ws: Workspace, exp_id: str) -> Response:
        exp = self._experiment_id(ws, exp_id)
        body = call.json() or {}
        keys = body if isinstance(body, list) else body.get("tags") or []
        for key in keys:
            exp.tags.pop(key, None)
        return self._json(200, {"errors": {}})

    # -- runs: reads -----------------------------------------------------------------------------

    def run_dto(self, ws: Workspace, run: RunRecord) -> dict[str, Any]:
        """The RunDto the service answers for `run`."""
        base = (f"https://{ws.location}.api.azureml.ms/execution/v1.0{ws.arm_id}"
                f"/experiments/{run.experiment.name}/runId/{run.id}")
        return {
            "runNumber": run.number, "rootRunId": run.id, "experimentId": run.experiment.id,
            "createdUtc": _iso(run.created), "userId": "a1b2c3d4-0000-0000-0000-000000000002",
            "runId": run.id, "parentRunId": None, "status": run.status,
            "startTimeUtc": _iso(run.started), "endTimeUtc": _iso(run.ended),
            "heartbeatEnabled": False, "name": None, "displayName": run.id,
            "dataContainerId": f"dcid.{run.id}", "description": None, "hidden": False,
            "runType": "azureml.scriptrun", "runUuid": run.run_uuid, "rootRunUuid": run.run_uuid,
            "properties": dict(run.properties), "scriptName": run.script_name,
            "target": run.target, "tags": dict(run.tags), "runDefinition": None,
            "createdFrom": None, "createdBy": {"userName": "amlctl-tests"},
            "cancelUri": f"{base}/cancel", "completeUri": None,
            "diagnosticsUri": None, "error": run.error, "warnings": None,
        }

    def _advance(self, ws: Workspace, run: RunRecord) -> None:
        """One read moves the run one step along its script."""
        if run.status in TERMINAL or not run.script:
            return
        run.status = run.script.pop(0)
        if run.status in ("Running", "Preparing") and run.started is None:
            run.started = _now()
        if run.status in TERMINAL:
            run.ended = _now()
        if run.started is not None:
            self._write_logs(ws, run)

    def _read(self, ws: Workspace, run_id: str) -> RunRecord:
        """A run being read: time passes for it (one step of its script)."""
        run = self._run(ws, run_id)
        self._advance(ws, run)
        return run

    def _run_get(self, call: Call, ws: Workspace, exp: str, run_id: str) -> Response:
        self._experiment(ws, exp)
        return self._json(200, self.run_dto(ws, self._read(ws, run_id)))

    def _run_get_by_exp_id(self, call: Call, ws: Workspace, exp_id: str, run_id: str
                           ) -> Response:
        self._experiment_id(ws, exp_id)
        return self._json(200, self.run_dto(ws, self._read(ws, run_id)))

    def _run_in_workspace(self, call: Call, ws: Workspace, run_id: str) -> Response:
        return self._json(200, self.run_dto(ws, self._read(ws, run_id)))

    def _run_details(self, call: Call, ws: Workspace, exp: str, run_id: str) -> Response:
        self._experiment(ws, exp)
        run = self._read(ws, run_id)
        return self._json(200, {
            "runId": run.id, "runUuid": run.run_uuid, "target": run.target,
            "status": run.status, "parentRunId": None, "startTimeUtc": _iso(run.started),
            "endTimeUtc": _iso(run.ended), "error": run.error, "warnings": None,
            "tags": dict(run.tags), "properties": dict(run.properties),
            "inputDatasets": [], "outputDatasets": [], "runDefinition": run.definition,
            "logFiles": {},  # the common runtime serves logs as artifacts, not here
            "jobCost": None, "revision": 1, "runTypeV2": None, "settings": {},
            "computeRequest": None, "compute": None, "createdBy": None,
            "computeDuration": None, "effectiveStartTimeUtc": None, "runNumber": run.number,
            "rootRunId": run.id, "userId": None, "statusRevision": 1,
            "currentComputeTime": None, "lastStartTimeUtc": None, "lastModifiedBy": None,
            "lastModifiedUtc": None, "duration": None, "runType": "azureml.scriptrun",
            "experimentId": run.experiment.id, "services": {}})

    def _runs_query(self, call: Call, ws: Workspace, exp_name: str) -> Response:
        exp = self._experiment(ws, exp_name)
        body = call.json() or {}
        predicate = _odata_filter(body.get("filter"))
        found = [r for r in self._runs(ws).values() if r.experiment is exp and predicate({
            "tags": r.tags, "properties": r.properties, "status": r.status, "runid": r.id,
            "parentrunid": None, "target": r.target, "runtype": "azureml.scriptrun"})]
        found.sort(key=lambda r: r.created, reverse=True)
        for run in found:
            self._advance(ws, run)
        return self._paged(call, body, [self.run_dto(ws, r) for r in found])

    # -- runs: writes ----------------------------------------------------------------------------

    def _run_patch(self, call: Call, ws: Workspace, exp_name: str, run_id: str) -> Response:
        return self._patch(call, ws, self._experiment(ws, exp_name), run_id)

    def _run_patch_by_exp_id(self, call: Call, ws: Workspace, exp_id: str, run_id: str
                             ) -> Response:
        return self._patch(call, ws, self._experiment_id(ws, exp_id), run_id)

    def _patch(self, call: Call, ws: Workspace, exp: ExperimentRecord, run_id: str) -> Response:
        body = call.json() or {}
        run = self._runs(ws).get(run_id)
        if run is None:  # a PATCH of an unknown id creates the run, as the service does
            run = self._new_run(ws, exp, run_id)
        for key, value in (body.get("tags") or {}).items():
            run.tags[str(key)] = str(value)
        for key, value in (body.get("properties") or {}).items():
            if key in run.properties and run.properties[key] != value and value is not None:
                raise self._error(400, "UserError", f"Property {key} is immutable")
            if value is not None:
                run.properties[str(key)] = str(value)
        return self._json(200, self.run_dto(ws, run))

    def _new_run(self, ws: Workspace, exp: ExperimentRecord, run_id: str) -> RunRecord:
        runs = self._runs(ws)
        number = 1 + sum(1 for r in runs.values() if r.experiment is exp)
        run = RunRecord(run_id, exp, number, "NotStarted", _now())
        runs[run_id] = run
        return run

    def _run_cancel(self, call: Call, ws: Workspace, exp_name: str, run_id: str) -> Response:
        self._experiment(ws, exp_name)
        run = self._run(ws, run_id)
        if run.status not in TERMINAL:
            run.status = "CancelRequested"
            run.script = ["CancelRequested"] * self.cancel_delay_reads + ["Canceled"]
        return self._json(200, self.run_dto(ws, run))

    def _metrics_ingest_wait(self, call: Call, ws: Workspace, exp_name: str, run_id: str
                             ) -> Response:
        self._run(ws, run_id)
        return self._json(200, {})  # no metric pipeline is modelled: always ingested

    # -- metrics ---------------------------------------------------------------------------------

    def log_metric(self, ws: Workspace, run_id: str, name: str, value: float, step: int) -> None:
        """Record a value of a run's metric, as a job logging it would."""
        self._run(ws, run_id).metrics.setdefault(name, []).append((step, value))

    def _metrics_list(self, call: Call, ws: Workspace, run_id: str) -> Response:
        run = self._run(ws, run_id)
        return self._json(200, {"value": [
            {"metricKey": {"namespace": None, "name": name}, "columns": {name: "Double"}}
            for name in run.metrics], "continuationToken": None})

    def _metrics_full(self, call: Call, ws: Workspace, run_id: str) -> Response:
        run = self._run(ws, run_id)
        name = call.json().get("metricName")
        if name not in run.metrics:
            raise self._error(404, "NotFound", f"metric {name!r} not found in run {run_id}")
        return self._json(200, {
            "dataContainerId": f"dcid.{run.id}", "name": name, "columns": {name: "Double"},
            "properties": {"uxMetricType": "azureml.v1.scalar"}, "continuationToken": None,
            "value": [{"metricId": str(uuid.uuid4()), "createdUtc": _iso(_now()), "step": step,
                       "data": {name: value}} for step, value in run.metrics[name]]})

    # -- snapshots and start ---------------------------------------------------------------------

    # -- the workspace's storage: the fake's own blob emulation, or Azurite ------------------

    def _sas_url(self, ws: Workspace, blob: str, container: str = LOG_CONTAINER) -> str:
        """A URL with a SAS for one blob of the workspace's storage account (signed for real
        when the storage is Azurite; the fake's own emulation accepts any signature)."""
        url = (f"https://{ws.storage_account}.blob.core.windows.net/{container}/"
               f"{urllib.parse.quote(blob)}")
        if self.service.default_storage is None:
            return url + "?sv=2019-07-07&sr=b&sp=rcw&sig=fake"
        from azureml._vendor.azure_storage.blob import BlobSasPermissions, generate_blob_sas

        self._container(ws, container)
        sas = generate_blob_sas(ws.storage_account, container, blob,
                                account_key=self.service.account_keys[ws.storage_account],
                                permission=BlobSasPermissions(read=True, create=True,
                                                              write=True),
                                expiry=_now() + dt.timedelta(hours=2))
        return f"{url}?{sas}"

    def _container(self, ws: Workspace, container: str) -> None:
        if self.service.default_storage is None:
            self.service.containers.setdefault((ws.storage_account, container), {})
        elif (ws.storage_account, container) not in self.made_containers:
            self.service.default_storage[2](container)
            self.made_containers.add((ws.storage_account, container))

    def _put_blob(self, ws: Workspace, container: str, blob: str, data: bytes) -> None:
        """Write a blob as the service itself would (logs written by the compute)."""
        self._container(ws, container)
        if self.service.default_storage is None:
            from fake_service import Blob

            self.service.containers[(ws.storage_account, container)][blob] = Blob(
                data, {}, None, "text/plain", f'"0x{uuid.uuid4().hex[:15].upper()}"',
                dt.datetime.now(dt.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT"))
            return
        from azureml._vendor.azure_storage.blob import BlobServiceClient

        client = BlobServiceClient(
            f"https://{ws.storage_account}.blob.core.windows.net",
            credential={"account_name": ws.storage_account,
                        "account_key": self.service.account_keys[ws.storage_account]})
        client.get_blob_client(container, blob).upload_blob(data, overwrite=True)

    def _snapshot_latest(self, call: Call, ws: Workspace) -> Response:
        latest = self.latest_snapshot.get(ws.arm_id.lower())
        if latest is None:
            return self._json(200, {"id": None, "root": {}})
        return self._json(200, {"id": latest, "root": self.snapshots[latest]["root"]})

    def _snapshot_blobs(self, call: Call, ws: Workspace) -> Response:
        names = (call.json() or {}).get("FileNames") or []
        prefix = str(uuid.uuid4())
        nodes = [{"fullName": n, "blobUri": self._sas_url(ws, f"{prefix}/{n}", "snapshots")}
                 for n in names]
        return self._json(200, {"fileNodes": nodes})

    def _snapshot_create(self, call: Call, ws: Workspace, snapshot_id: str) -> Response:
        body = call.json() or {}
        files = [f["FullName"] for f in (body.get("FileRevisionList") or {}).get(
            "FileNodes") or []]
        self.snapshots[snapshot_id] = {"files": files, "parent": body.get("ParentSnapshotId"),
                                       "root": body.get("DirTreeNode") or {}}
        self.latest_snapshot[ws.arm_id.lower()] = snapshot_id
        return self._json(200, {"id": snapshot_id, "root": body.get("DirTreeNode")})

    def _start_run(self, call: Call, ws: Workspace, exp_name: str) -> Response:
        run_id = call.query.get("runId")
        if not run_id or run_id == "None":
            run_id = f"{exp_name}_{int(_now().timestamp())}_{uuid.uuid4().hex[:8]}"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,255}", run_id):
            raise self._error(400, "UserError", f"Run id {run_id!r} is invalid")
        if run_id in self._runs(ws):
            raise self._error(409, "UserError",
                              f"Run {run_id} already exists in experiment "
                              f"{self._runs(ws)[run_id].experiment.name}")
        body = call.json() or {}
        snapshot = body.get("SnapshotId")
        if snapshot and snapshot not in self.snapshots:
            raise self._error(400, "UserError", f"Snapshot {snapshot} not found")
        config = body.get("Configuration") or {}
        target = config.get("target")
        if target and target != "local" and target not in ws.computes:
            raise self._error(400, "UserError",
                              f"Compute target {target} not found in workspace {ws.name}")
        exp = self.add_experiment(ws, exp_name)
        run = self._new_run(ws, exp, run_id)
        run.definition, run.target, run.script_name = config, target, config.get("script")
        run.status = "NotStarted"
        if self.hold_runs:
            run.script = []
        elif self.fail_runs is not None:
            run.script = ["Queued", "Running", "Failed"]
            run.error = {"error": {"code": "UserError", "message": self.fail_runs}}
        else:
            run.script = list(self.run_script)
        return self._json(200, {"runId": run_id, "status": run.status})

    def set_status(self, ws: Workspace, run_id: str, status: str) -> None:
        """Move a run by hand (tests of what a status looks like)."""
        run = self._run(ws, run_id)
        run.status, run.script = status, []
        if status not in ("NotStarted", "Queued") and run.started is None:
            run.started = _now()
        if status in TERMINAL:
            run.ended = _now()
        if run.started is not None:
            self._write_logs(ws, run)

    # -- logs ------------------------------------------------------------------------------------

    @staticmethod
    def roles(definition: dict[str, Any]) -> list[str]:
        """The processes AML starts for a run configuration, by log name."""
        framework = (definition.get("framework") or "Python").lower()
        tf = definition.get("tensorflow") or {}
        if framework == "tensorflow" and definition.get("communicator") == "ParameterServer":
            return ([f"ps_{i}" for i in range(int(tf.get("parameterServerCount") or 0))]
                    + [f"worker_{i}" for i in range(int(tf.get("workerCount") or 1))])
        nodes = int(definition.get("nodeCount") or 1)
        if "mpi" in str(definition.get("communicator") or "").lower():  # one log per rank
            per_node = int((definition.get("mpi") or {}).get("processCountPerNode") or 1)
            return [f"process_{i}" for i in range(nodes * per_node)]
        return [f"worker_{i}" for i in range(nodes)]

    def _artifacts_by_prefix(self, call: Call, ws: Workspace, origin: str, container: str,
                             prefix: str) -> Response:
        found = []
        for run in self._runs(ws).values():
            if origin != "ExperimentRun" or container != f"dcid.{run.id}":
                continue
            found = [{"contentUri": self._sas_url(ws, blob), "origin": origin,
                      "container": container, "path": path}
                     for path, blob in sorted(run.logs.items()) if path.startswith(prefix)]
        return self._json(200, {"value": found, "continuationToken": None})

    def write_log(self, ws: Workspace, run_id: str, name: str, text: str) -> None:
        """A log file the run's processes wrote beside the declared ones (e.g. a process
        the run definition does not name)."""
        run = self._run(ws, run_id)
        blob = f"ExperimentRun/dcid.{run.id}/{name}"
        self._put_blob(ws, LOG_CONTAINER, blob, text.encode())
        run.logs[name] = blob

    def _write_logs(self, ws: Workspace, run: RunRecord) -> None:
        """What each process of the run printed so far, as the common runtime stores it."""
        for role in self.roles(run.definition):
            name = f"user_logs/std_log_{role}.txt"
            blob = f"ExperimentRun/dcid.{run.id}/{name}"
            lines = [f"{role}: starting {run.script_name or 'command'} on {run.target}"]
            if run.status in TERMINAL:
                lines.append(f"{role}: run {run.id} ended {run.status}")
            text = "".join(line + "\n" for line in lines).encode()
            self._put_blob(ws, LOG_CONTAINER, blob, text)
            run.logs[name] = blob


# --- OData filters of the SDK ---------------------------------------------------------------------

_VALUE = r"""('(?:[^']|'')*'|"(?:[^"\\]|\\.)*"|[^\s()]+)"""
_ATOM = re.compile(r"\(?\s*(Tags|Properties)/([^\s()]+)\s+eq\s+" + _VALUE + r"\s*\)?"
                   r"|\(?\s*(Status|RunId|Target|ParentRunId|name|RunType)\s+eq\s+" + _VALUE
                   + r"\s*\)?", re.I)


def _literal(value: str) -> str | None:
    if value == "null":
        return None
    if value[:1] == "'":
        return value[1:-1].replace("''", "'")
    if value[:1] == '"':
        return str(json.loads(value))
    return value


def _odata_filter(text: str | None) -> Any:
    """A predicate for the AND-joined equality filters the SDK builds (tags, status, ...).

    Anything else is refused with the service's 400, so an unmodelled query fails loudly.
    """
    from fake_service import ServiceError

    if not text:
        return lambda _item: True
    checks: list[tuple[str, str | None, str | None]] = []
    rest = text
    for m in _ATOM.finditer(text):
        rest = rest.replace(m.group(0), " ", 1)
        if m.group(1):
            checks.append((m.group(1).lower(), m.group(2), _literal(m.group(3))))
        else:
            checks.append((m.group(4).lower(), None, _literal(m.group(5))))
    if re.sub(r"[\s()]|\band\b", "", rest, flags=re.I):
        raise ServiceError(400, "BadRequest", f"Unsupported filter expression: {text}")

    def predicate(item: dict[str, Any]) -> bool:
        for kind, key, value in checks:
            if kind in ("tags", "properties"):
                actual = (item.get(kind) or {}).get(key)
            else:
                actual = item.get(kind)
            if actual != value:
                return False
        return True

    return predicate
