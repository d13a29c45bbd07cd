"""The SDK v2 (azure-ai-ml) routes of the fake Azure edge, on top of tests/azure/fake_service.py.

SDK v2 talks ARM REST to the workspace: computes, datastores (with `listSecrets`), code and
environment versions, and jobs (`PUT .../workspaces/W/jobs/NAME`). `FakeV2Azure` adds those
routes to `FakeAzure` and keeps them on the SAME in-memory workspace state the v1 routes use
(clusters, datastore registrations, blob containers), so a workspace written through one SDK
reads the same through the other. Jobs live in `jobs`; a v1 run-history stand-in can put its
runs there too (`add_job`), as the real service shows v1 runs as v2 jobs.

A v2 job is also a run of the run history service, which SDK v2 reads through the region host
(`V2RunHistory`): `jobs.stream` polls `GET /history/v1.0/.../runs/NAME/details` and downloads
its `logFiles` (SAS URLs of the workspace storage); the metric service (`/metric/v2.0/.../runs/
NAME/list` and `/full`) answers what the job logged (`log_job_metric`, as `mlflow.log_metric`
in the job would). Each details read moves a job one step along `job_script` (empty by
default: a job then moves only by `set_job_status`); once a job runs, each of its processes
(ps_0, worker_0, ...) has a log `user_logs/std_log_<process>.txt` in the workspace storage.

Accepted api-versions are read from the installed SDK (`api_versions()`), never guessed.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import uuid
from typing import Any

from fake_history import TERMINAL, ExperimentRecord, RunHistory, RunRecord
from fake_service import (
    ARM_HOST,
    BLOB_HOST_SUFFIX,
    COMPUTE_API_VERSIONS,
    ML_PROVIDER,
    RESOURCE_GROUP_API_VERSIONS,
    WORKSPACE_API_VERSIONS,
    Call,
    FakeAzure,
    ServiceError,
    Workspace,
    make_token,
    utcnow,
)

Reply = tuple[int, dict[str, str], bytes]
SCALE_ONLY = "scaleSettings"


def api_versions() -> frozenset[str]:
    """Every api-version the installed azure-ai-ml wires into its ARM service clients."""
    from functools import partial

    import azure.ai.ml._ml_client as client

    return frozenset(v.keywords["api_version"] for v in vars(client).values()
                     if isinstance(v, partial) and "api_version" in v.keywords)


def container_sas(account: str, key: str, container: str) -> str:
    """A container SAS (read, create, write, list; one hour) signed with the account key."""
    import datetime as dt

    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(
        account, container, account_key=key,
        permission=ContainerSasPermissions(read=True, create=True, write=True, list=True),
        expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1))


def resources_api_version() -> str:
    """The api-version of the ARM resources client azure-ai-ml deploys workspaces with."""
    from azure.ai.ml.constants._common import ArmConstants

    return str(ArmConstants.AZURE_MGMT_RESOURCE_API_VERSION)


def _resolve(value: Any, parameters: dict[str, Any]) -> Any:
    """A template value: `[parameters('x')]` looked up, anything else as written."""
    m = re.fullmatch(r"\[parameters\('([^']+)'\)\]", value) if isinstance(value, str) else None
    return (parameters.get(m.group(1)) or {}).get("value") if m else value


_CREDENTIAL_TYPES = {"AccountKey": "AccountKey", "Sas": "Sas", "None": "None"}


class FakeV2Azure(FakeAzure):
    """FakeAzure plus the ARM routes SDK v2 uses (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.v2_versions = api_versions()
        # (resource group, workspace) lower-cased -> name -> ARM body
        self.jobs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        self.assets: dict[str, dict[str, Any]] = {}  # ARM id of a code/environment version
        self.fail_after_job_create = 0  # job PUTs answered 500 although the job was created
        self.federated: dict[str, str] = {}  # client id -> the assertion Entra ID accepts
        self.broken_upload_sas = False  # hand out SAS tokens storage refuses (403)
        self.history = V2RunHistory(self)  # v1 runs, and v2 jobs as run-history runs
        self.job_script: list[str] = []  # statuses a new job takes, one per details read

    def reset(self) -> None:
        """Forget jobs and assets too."""
        with self.lock:
            super().reset()
            self.jobs.clear()
            self.assets.clear()
            self.fail_after_job_create = 0
            self.federated.clear()
            self.broken_upload_sas = False
            self.job_script = []

    # -- shared-state helpers --------------------------------------------------------------------

    def add_job(self, resource_group: str, workspace: str, name: str, experiment: str,
                tags: dict[str, str], status: str = "Queued", compute: str | None = None
                ) -> dict[str, Any]:
        """Record a run as the service lists it through the v2 jobs API."""
        with self.lock:
            ws = self._workspace(resource_group, workspace)
            body = {"jobType": "Command", "experimentName": experiment, "tags": dict(tags),
                    "displayName": tags.get("amlctl.run") or name, "command": "python run.py",
                    "environmentId": f"{ws.arm_id}/environments/v1/versions/1",
                    "computeId": f"{ws.arm_id}/computes/{compute}" if compute else None}
            return self._store_job(ws, name, body, status)

    def job_bodies(self, resource_group: str, workspace: str) -> dict[str, dict[str, Any]]:
        """A copy of the stored jobs of a workspace."""
        with self.lock:
            return json.loads(json.dumps(self.jobs.get((resource_group.lower(),
                                                        workspace.lower()), {})))

    def set_job_status(self, resource_group: str, workspace: str, name: str,
                       status: str) -> None:
        """Move a job on, as the execution service would."""
        with self.lock:
            self.jobs[(resource_group.lower(), workspace.lower())][name]["properties"][
                "status"] = status
            ws = self._workspace(resource_group, workspace)
            run = self.history.job_run(ws, name)
            run.script = []
            self.history.move(ws, run, status)

    def log_job_metric(self, resource_group: str, workspace: str, name: str, metric: str,
                       value: float, step: int) -> None:
        """Record a value of a job's metric, as `mlflow.log_metric` in the job would."""
        with self.lock:
            ws = self._workspace(resource_group, workspace)
            self.history.job_run(ws, name).metrics.setdefault(metric, []).append((step, value))

    # -- routing ----------

    def _api_version(self, call: Call, allowed: set[str]) -> None:
        # the v1 routes' sets, widened for the same resources by what SDK v2 sends
        if allowed is WORKSPACE_API_VERSIONS or allowed is COMPUTE_API_VERSIONS:
            allowed = allowed | self.v2_versions
        elif allowed is RESOURCE_GROUP_API_VERSIONS:
            allowed = allowed | {resources_api_version()}
        super()._api_version(call, allowed)

    def _arm(self, call: Call) -> Reply:
        p = call.path.rstrip("/")
        m = re.match(rf"^/subscriptions/{re.escape(self.subscription_id)}/resourcegroups/"
                     r"([^/]+)/(?:providers/Microsoft\.Resources/)?deployments/([^/]+)(/operations)?$",
                     p, re.I)
        if m:
            self._api_version(call, {resources_api_version()})
            return self._deployment(call, urllib.parse.unquote(m.group(1)), m.group(2),
                                    bool(m.group(3)))
        m = re.match(rf"^/subscriptions/{re.escape(self.subscription_id)}/resourceGroups/"
                     rf"([^/]+)/providers/{ML_PROVIDER}/workspaces/([^/]+)/(.+)$", p, re.I)
        if m:
            rest = m.group(3)
            routed = self._v2_route(call, m.group(1), m.group(2), rest)
            if routed is not None:
                return routed
        return super()._arm(call)

    def _v2_route(self, call: Call, rg: str, ws_name: str, rest: str) -> Reply | None:
        parts = [urllib.parse.unquote(x) for x in rest.split("/")]
        kind = parts[0].lower()
        if kind == "computes" and len(parts) == 1 and call.method == "GET":
            self._api_version(call, self.v2_versions)
            ws = self._workspace(rg, ws_name)
            return self._json(200, {"value": list(ws.computes.values())})
        if kind == "datastores":
            self._api_version(call, self.v2_versions)
            return self._v2_datastores(call, self._workspace(rg, ws_name), parts[1:])
        if kind == "jobs":
            self._api_version(call, self.v2_versions)
            return self._v2_jobs(call, self._workspace(rg, ws_name), parts[1:])
        if kind in ("codes", "environments"):
            self._api_version(call, self.v2_versions)
            return self._v2_asset(call, self._workspace(rg, ws_name), kind, parts[1:])
        return None

    # -- Entra ID: workload identity federation ----------

    def add_federated_identity(self, client_id: str, assertion: str) -> None:
        """Let the token endpoint accept `assertion` (the OIDC token a CI runner holds) as
        the client credential of `client_id`."""
        with self.lock:
            self.federated[client_id] = assertion

    def _aad(self, call: Call) -> Reply:
        form = dict(urllib.parse.parse_qsl(call.body.decode())) if call.method == "POST" else {}
        m = re.match(r"^/([^/]+)/oauth2/v2\.0/token$", call.path)
        if m and "client_assertion" in form:
            client = form.get("client_id", "")
            if (form.get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-"
                    "type:jwt-bearer" or self.federated.get(client) != form["client_assertion"]):
                return self._json(401, {"error": "invalid_client", "error_description":
                                        "AADSTS700213: No matching federated identity record "
                                        "found for presented assertion."})
            scope = form.get("scope", "").split()[0]
            audience = scope[: -len(".default")] if scope.endswith("/.default") else scope
            return self._json(200, {"token_type": "Bearer", "expires_in": 3599,
                                    "ext_expires_in": 3599,
                                    "access_token": make_token(audience, tenant=m.group(1))})
        return super()._aad(call)

    # -- ARM template deployments (how SDK v2 creates a workspace) ----------

    def _deployment(self, call: Call, rg: str, name: str, operations: bool) -> Reply:
        rid = (f"/subscriptions/{self.subscription_id}/resourceGroups/{rg}/providers/"
               f"Microsoft.Resources/deployments/{name}")
        if operations:
            return self._json(200, {"value": []})
        if call.method == "PUT":
            if rg not in self.resource_groups:
                raise ServiceError(404, "ResourceGroupNotFound",
                                   f"Resource group '{rg}' could not be found.")
            props = (call.json() or {}).get("properties") or {}
            parameters = props.get("parameters") or {}
            created = []
            for res in (props.get("template") or {}).get("resources") or []:
                if str(res.get("type")).lower() == f"{ML_PROVIDER}/workspaces".lower():
                    ws_name = _resolve(res.get("name"), parameters)
                    tags = _resolve(res.get("tags"), parameters) or {}
                    if (rg.lower(), str(ws_name).lower()) not in self.workspaces:
                        self.add_workspace(rg, ws_name, _resolve(res.get("location"),
                                                                 parameters), tags)
                    created.append(ws_name)
            if not created:
                raise ServiceError(400, "InvalidTemplate", "Only workspace deployments are "
                                   "modelled")
        body = {"id": rid, "name": name, "properties": {"provisioningState": "Succeeded",
                                                        "duration": "PT1S", "mode": "Incremental",
                                                        "timestamp": utcnow()}}
        return self._json(201 if call.method == "PUT" else 200, body)

    # -- VM sizes: the v2 list model reads `value`, v1 reads `amlCompute` ----------

    def _vm_sizes(self) -> Reply:
        status, headers, body = super()._vm_sizes()
        sizes = json.loads(body)
        sizes["value"] = sizes["amlCompute"]
        return status, headers, json.dumps(sizes).encode()

    # -- computes: PUT of an existing cluster ----------

    def _compute_put(self, ws: Workspace, name: str, body: dict[str, Any]) -> Reply:
        """SDK v2 updates a cluster with a PUT of its whole definition: Azure ML accepts it
        when only the scale settings differ, and refuses any other change."""
        existing = ws.computes.get(name)
        if existing is None or existing["properties"]["provisioningState"] == "Deleting":
            return super()._compute_put(ws, name, body)
        have = existing["properties"]["properties"]
        want = (body.get("properties") or {}).get("properties") or {}
        fixed = {"vmSize": lambda v: str(v or "").lower(),
                 "vmPriority": lambda v: str(v or "Dedicated").lower(),
                 "subnet": lambda v: ((v or {}).get("id") or "").lower() or None}
        changed = sorted(k for k, norm in fixed.items() if norm(want.get(k)) != norm(have.get(k)))
        if (body.get("tags") or None) != (existing.get("tags") or None):
            changed.append("tags")
        if changed:
            raise ServiceError(400, "BadArgument",
                               f"Compute '{name}': {', '.join(changed)} cannot be updated; only "
                               "scale settings can change on an existing AmlCompute.")
        return self._compute_patch(ws, name, {"properties": {"properties": {
            SCALE_ONLY: want.get(SCALE_ONLY) or {}}}})

    # -- datastores ----------

    def _v2_datastore_body(self, ws: Workspace, rec: dict[str, Any]) -> dict[str, Any]:
        section = rec["azureStorageSection"]
        blob = rec["dataStoreType"] == "AzureBlob"
        props: dict[str, Any] = {
            "datastoreType": rec["dataStoreType"], "accountName": section["accountName"],
            "endpoint": section.get("endpoint") or "core.windows.net",
            "protocol": section.get("protocol") or "https",
            "credentials": {"credentialsType": section.get("credentialType") or "None"},
            "isDefault": rec["name"] == ws.default_datastore, "tags": rec.get("tags") or {},
            "description": None, "properties": {}}
        if blob:
            props["containerName"] = section["containerName"]
            props["serviceDataAccessAuthIdentity"] = "None"
        else:
            props["fileShareName"] = section["containerName"]
        return {"id": f"{ws.arm_id}/datastores/{rec['name']}", "name": rec["name"],
                "type": f"{ML_PROVIDER}/workspaces/datastores", "properties": props,
                "systemData": {"createdAt": utcnow(), "createdBy": "amlctl-tests",
                               "createdByType": "Application"}}

    def _v2_datastores(self, call: Call, ws: Workspace, parts: list[str]) -> Reply:
        if not parts:
            if call.method != "GET":
                raise ServiceError(405, "MethodNotAllowed", "List is GET")
            names = sorted(ws.datastores)
            if call.query.get("isDefault", "").lower() == "true":
                names = [ws.default_datastore]
            return self._json(200, {"value": [self._v2_datastore_body(ws, ws.datastores[n])
                                              for n in names]})
        name = parts[0].lower()
        rec = ws.datastores.get(name)
        if len(parts) == 2 and parts[1] == "listSecrets" and call.method == "POST":
            if rec is None:
                raise ServiceError(404, "UserError", f"Datastore {name} not found.")
            section = rec["azureStorageSection"]
            ctype = section.get("credentialType")
            if ctype == "AccountKey":
                return self._json(200, {"secretsType": "AccountKey",
                                        "key": section["credential"]})
            if ctype == "Sas":
                return self._json(200, {"secretsType": "Sas", "sasToken": section["credential"]})
            return self._json(200, {"secretsType": "None"})
        if len(parts) != 1:
            raise ServiceError(404, "NotFound", f"No route for {call.method} {call.path}")
        if call.method == "GET":
            if rec is None:
                raise ServiceError(404, "UserError", f"Datastore {name} not found.")
            return self._json(200, self._v2_datastore_body(ws, rec))
        if call.method == "DELETE":
            if rec is None:
                return 204, {"Content-Length": "0"}, b""
            if name == ws.default_datastore:
                raise ServiceError(400, "UserError", "Cannot delete the default datastore.")
            del ws.datastores[name]
            return 200, {"Content-Length": "0"}, b""
        if call.method == "PUT":
            props = call.json().get("properties") or {}
            kind = props.get("datastoreType")
            if kind not in ("AzureBlob", "AzureFile") or not props.get("accountName"):
                raise ServiceError(400, "UserError", "Only AzureBlob and AzureFile are modelled")
            creds = props.get("credentials") or {}
            ctype = _CREDENTIAL_TYPES.get(creds.get("credentialsType") or "None", "None")
            secrets = creds.get("secrets") or {}
            secret = secrets.get("key") or secrets.get("sasToken")
            if ctype != "None" and not secret:
                raise ServiceError(400, "UserError", "Credentials secrets are required.")
            store = props.get("containerName") if kind == "AzureBlob" else \
                props.get("fileShareName")
            new = self._datastore_record(name, kind, props["accountName"], store or "", ctype,
                                         secret, props.get("endpoint"))
            new["azureStorageSection"]["protocol"] = props.get("protocol") or "https"
            ws.datastores[name] = new
            return self._json(200 if rec else 201, self._v2_datastore_body(ws, new))
        raise ServiceError(405, "MethodNotAllowed", f"{call.method} on a datastore")

    # -- code and environment versions ----------

    def _v2_asset(self, call: Call, ws: Workspace, kind: str, parts: list[str]) -> Reply:
        rid = f"{ws.arm_id}/{kind}/{'/'.join(parts)}"
        if len(parts) == 2 and parts[1] == "versions" and call.method == "GET":
            # the SDK looks for an earlier upload of the same content by its hash
            wanted = call.query.get("hash")
            found = [a for key, a in self.assets.items() if key.startswith(rid.lower() + "/")
                     and (wanted is None or wanted in json.dumps(a))]
            return self._json(200, {"value": found})
        if len(parts) == 4 and parts[3] == "startPendingUpload" and call.method == "POST":
            # a temporary container of the workspace storage, reached with a SAS
            container = uuid.uuid4().hex
            if self.default_storage is not None:
                self.default_storage[2](container)  # Azurite: it checks the signature
            else:
                self.containers[(ws.storage_account, container)] = {}
            blob = f"https://{ws.storage_account}{BLOB_HOST_SUFFIX}/{container}"
            sas = container_sas(ws.storage_account, self.account_keys[ws.storage_account],
                                container)
            if self.broken_upload_sas:
                sas = re.sub(r"sig=[^&]+", "sig=bm90LXRoZS1zaWduYXR1cmU%3D", sas)
            return self._json(200, {
                "pendingUploadId": str(uuid.uuid4()), "pendingUploadType": "TemporaryBlobReference",
                "blobReferenceForConsumption": {
                    "blobUri": blob, "storageAccountArmId": None,
                    "credential": {"credentialType": "SAS",
                                   "sasUri": f"{blob}?{sas}"}}})
        if call.method == "GET":
            found = self.assets.get(rid.lower())
            if found is None:
                raise ServiceError(404, "UserError", f"{kind} {'/'.join(parts)} not found.")
            return self._json(200, found)
        if call.method == "PUT":
            body = call.json() or {}
            stored = {"id": rid, "name": parts[-1], "type": f"{ML_PROVIDER}/workspaces/{kind}",
                      "properties": body.get("properties") or {},
                      "systemData": {"createdAt": utcnow(), "createdBy": "amlctl-tests",
                                     "createdByType": "Application"}}
            self.assets[rid.lower()] = stored
            return self._json(201, stored)
        raise ServiceError(405, "MethodNotAllowed", f"{call.method} on {kind}")

    # -- jobs ----------

    def _store_job(self, ws: Workspace, name: str, props: dict[str, Any],
                   status: str) -> dict[str, Any]:
        body = {"id": f"{ws.arm_id}/jobs/{name}", "name": name,
                "type": f"{ML_PROVIDER}/workspaces/jobs",
                "properties": {**props, "status": status,
                               "services": {"Studio": {"endpoint": "https://ml.azure.com/runs/"
                                                       f"{name}", "jobServiceType": "Studio"}}},
                "systemData": {"createdAt": utcnow(), "createdBy": "amlctl-tests",
                               "createdByType": "Application"}}
        self.jobs.setdefault((ws.resource_group.lower(), ws.name.lower()), {})[name] = body
        return body

    def _v2_jobs(self, call: Call, ws: Workspace, parts: list[str]) -> Reply:
        jobs = self.jobs.setdefault((ws.resource_group.lower(), ws.name.lower()), {})
        if not parts:
            if call.method != "GET":
                raise ServiceError(405, "MethodNotAllowed", "List is GET")
            key = call.query.get("tag")  # "jobs returned will have this tag key"
            listed = [j for j in jobs.values()
                      if key is None or key in (j["properties"].get("tags") or {})]
            return self._json(200, {"value": sorted(
                listed, key=lambda j: j["systemData"]["createdAt"], reverse=True)})
        name = parts[0]
        job = jobs.get(name)
        if len(parts) == 2 and parts[1] == "cancel" and call.method == "POST":
            if job is None:
                raise ServiceError(404, "UserError", f"Job {name} not found.")
            if job["properties"]["status"] not in ("Completed", "Failed", "Canceled"):
                job["properties"]["status"] = "Canceled"
            return 202, {"Content-Length": "0"}, b""
        if len(parts) != 1:
            raise ServiceError(404, "NotFound", f"No route for {call.method} {call.path}")
        if call.method == "GET":
            if job is None:
                raise ServiceError(404, "UserError", f"Job {name} not found.")
            return self._json(200, job)
        if call.method == "PUT":
            if job is not None:
                raise ServiceError(409, "UserError", f"A job named {name} already exists; its "
                                   "definition cannot be changed.")
            props = (call.json() or {}).get("properties") or {}
            if props.get("jobType") != "Command":
                raise ServiceError(400, "UserError", "Only command jobs are modelled")
            for ref in (props.get("codeId"), props.get("environmentId")):
                if ref and ref.lower() not in self.assets and "/versions/" in ref:
                    raise ServiceError(400, "UserError", f"Asset {ref} does not exist.")
            stored = self._store_job(ws, name, props, "NotStarted")
            self.history.job_run(ws, name).script = list(self.job_script)
            if self.fail_after_job_create > 0:
                self.fail_after_job_create -= 1
                raise ServiceError(500, "InternalServerError", "Scripted failure after the "
                                   "job was created")
            return self._json(201, stored)
        raise ServiceError(405, "MethodNotAllowed", f"{call.method} on a job")

    # -- blob container properties (the storage SDK v12 asks before uploading) ----------

    def _blob(self, call: Call) -> Reply:
        parts = call.path.lstrip("/").split("/", 1)
        if (call.method in ("GET", "HEAD") and (len(parts) == 1 or not parts[1])
                and call.query.get("restype") == "container" and "comp" not in call.query):
            account = call.host[: -len(BLOB_HOST_SUFFIX)]
            self._check_shared_key(call, account)
            if (account, urllib.parse.unquote(parts[0])) not in self.containers:
                raise ServiceError(404, "ContainerNotFound",
                                   "The specified container does not exist.")
            return 200, {"ETag": f'"0x{uuid.uuid4().hex[:15].upper()}"',
                         "x-ms-version": "2021-08-06", "Content-Length": "0"}, b""
        return super()._blob(call)


class V2RunHistory(RunHistory):
    """The run history service with v2 jobs in it: a job's run record (status, logs,
    metrics) is made on first use and kept in step with the job's ARM body."""

    ROUTES = [*RunHistory.ROUTES,
              ("GET", r"/history/v1\.0/runs/([^/]+)/details", "_run_details_by_id")]

    def reset(self) -> None:
        """Forget the jobs' runs too."""
        super().reset()
        self.job_runs: dict[tuple[str, str], RunRecord] = {}  # (workspace id, job) -> run

    def _job_body(self, ws: Workspace, name: str) -> dict[str, Any] | None:
        service: FakeV2Azure = self.service  # type: ignore[assignment]
        return service.jobs.get((ws.resource_group.lower(), ws.name.lower()), {}).get(name)

    def job_run(self, ws: Workspace, name: str) -> RunRecord:
        """The run record of job `name` (404 when there is no such job)."""
        key = (ws.arm_id.lower(), name)
        run = self.job_runs.get(key)
        if run is None:
            body = self._job_body(ws, name)
            if body is None:
                raise self._error(404, "UserError", f"Run {name} was not found")
            props = body["properties"]
            exp = ExperimentRecord(str(uuid.uuid4()), props.get("experimentName") or "Default",
                                   {}, utcnow_dt())
            compute = str(props.get("computeId") or "").rsplit("/", 1)[-1] or None
            run = RunRecord(name, exp, len(self.job_runs) + 1, props["status"], utcnow_dt(),
                            tags=dict(props.get("tags") or {}), definition=props,
                            target=compute, script_name=props.get("command"))
            self.job_runs[key] = run
        return run

    def _run(self, ws: Workspace, run_id: str) -> RunRecord:
        if self._job_body(ws, run_id) is not None:
            return self.job_run(ws, run_id)
        return super()._run(ws, run_id)

    @staticmethod
    def roles(definition: dict[str, Any]) -> list[str]:
        """The processes of a v2 command job (its ARM body's properties), by log name; a
        v1 run configuration as the v1 fake names them."""
        if "jobType" not in definition:
            return RunHistory.roles(definition)
        dist = definition.get("distribution") or {}
        instances = int((definition.get("resources") or {}).get("instanceCount") or 1)
        if dist.get("distributionType") == "TensorFlow":
            return ([f"ps_{i}" for i in range(int(dist.get("parameterServerCount") or 0))]
                    + [f"worker_{i}" for i in range(int(dist.get("workerCount") or 1))])
        return [f"worker_{i}" for i in range(instances)]

    def move(self, ws: Workspace, run: RunRecord, status: str) -> None:
        """Set a job's status (in its run and its ARM body) and write its logs so far."""
        run.status = status
        if status not in ("NotStarted", "Queued", "Preparing") and run.started is None:
            run.started = utcnow_dt()
        if status in TERMINAL:
            run.ended = utcnow_dt()
        body = self._job_body(ws, run.id)
        if body is not None:
            body["properties"]["status"] = status
        if run.started is not None:
            self._write_logs(ws, run)

    def _run_details_by_id(self, call: Call, ws: Workspace, run_id: str) -> Reply:
        if self._job_body(ws, run_id) is None:
            return self._run_details(call, ws, self._run(ws, run_id).experiment.name, run_id)
        run = self.job_run(ws, run_id)
        if run.script and run.status not in TERMINAL:
            self.move(ws, run, run.script.pop(0))
        return self._json(200, {
            "runId": run.id, "runUuid": run.run_uuid, "target": run.target,
            "status": run.status, "startTimeUtc": _iso(run.started),
            "endTimeUtc": _iso(run.ended), "error": run.error, "warnings": None,
            "tags": dict(run.tags), "properties": {}, "inputDatasets": [],
            "outputDatasets": [], "runDefinition": None,
            "logFiles": {path: self._sas_url(ws, blob) for path, blob in sorted(
                run.logs.items())},
            "services": {}})


def utcnow_dt() -> Any:
    """Now, timezone-aware (what run records hold)."""
    import datetime as dt

    return dt.datetime.now(dt.UTC)


def _iso(value: Any) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if value else None


__all__ = ["ARM_HOST", "FakeV2Azure", "V2RunHistory", "api_versions"]
