"""AzureV2Provider: the provider interface over azure-ai-ml (SDK v2), beside the v1 backend.

It reads and writes the same things the v1 backend does, in the same vocabulary, so one
workspace can be switched between `backend: azure` and `backend: azure-v2` without a change in
the plan: the `amlctl.stack` tag on the workspace and clusters, v1's records under
`.amlctl/objects/` in the default datastore for datastores and uploads (records.py, reused),
v1's content-hash blob sync for uploads (blobfiles.py, reused), v1's run tags for runs.

Experiments have no API in SDK v2 (a job names its `experiment_name`): an experiment is live
when a record says so or a job of it exists; its owner is the record's, else the stack tag of
its jobs. Nothing here imports azure.ai.ml until the first call that needs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlctl.errors import ProviderError
from amlctl.providers.azure.common import DEFAULT_DATASTORE, AzureBase
from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.handlers import DatastoreService
from amlctl.providers.azure.retry import DEFAULT_POLICY, AzureCallError, RetryPolicy, call
from amlctl.providers.azure.runs import RunRecord
from amlctl.providers.azure.state import LEASE_SECONDS
from amlctl.providers.azure_v2 import sdk
from amlctl.providers.base import (
    OWNER_TAG,
    LiveObject,
    MetricSeries,
    RoleStatus,
    RunInfo,
    RunRequest,
)
from amlctl.providers.dispatch import Found, Handler, KindHandler
from amlctl.providers.logroles import only_role
from amlctl.providers.resources import Address

if TYPE_CHECKING:
    from amlctl.engine.state import StateStore

log = logging.getLogger("amlctl.azure_v2")
ARCHIVED = "archived"


class AzureV2Provider(AzureBase):
    """One Azure ML workspace of one stack, through SDK v2."""

    name = "azure-v2"

    def __init__(self, workspace: dict[str, Any], stack: str, state_dir: Path, *,
                 credential: Any = None, cloud: str | None = None,
                 policy: RetryPolicy = DEFAULT_POLICY,
                 compute_settings: ComputeSettings | None = None) -> None:
        super().__init__(workspace, stack, state_dir)
        self._credential = credential
        self._cloud = cloud
        self.policy = policy
        self.compute_settings = compute_settings
        self._client: Any = None
        self._exists: bool | None = None
        self._default: Any = None
        self.state_lease_seconds = LEASE_SECONDS
        self._manifest_credentials: dict[str, dict[str, str]] = {}
        self._forget()

    def _forget(self) -> None:
        """Drop what one command keeps of what it read (a plan lists the jobs once)."""
        self._listed_jobs: dict[str | None, list[RunRecord]] = {}  # tag key (None: all)
        self._opened: Any = None  # the workspace `_open` read, for the next read_all
        self._records_obj: Any = None  # amlctl's records, listed once per read

    # plumbing ----------------------------------------------------------------------------------

    def client(self) -> Any:
        """The MLClient of the manifest's workspace (made once, no request yet)."""
        if self._client is None:
            from amlctl.providers.azure.auth import cloud_name

            sdk.load()  # first: names the extra when azure-ai-ml or azure-identity is missing
            if self._credential is None:
                from amlctl.providers.azure_v2 import auth

                chosen = auth.resolve()
                log.info("authenticating as %s", chosen.description)
                self._credential, self._cloud = chosen.auth, chosen.cloud
            self._cloud = self._cloud or cloud_name()
            self._client = sdk.ml_client(self._credential, self.workspace, self._cloud)
        return self._client

    def _workspace(self) -> Any | None:
        def fetch() -> Any | None:
            try:
                return self.client().workspaces.get(self.workspace["name"])
            except Exception as e:
                if sdk.is_not_found(e):
                    return None
                raise

        return call(f"opening workspace {self.workspace['name']}", fetch, self.policy)

    def _open(self) -> bool:
        if self._exists is None:
            self._opened = self._workspace()
            self._exists = self._opened is not None
        return self._exists

    def _require(self) -> Any:
        if not self._open():
            raise ProviderError(f"workspace {self.workspace['name']!r} does not exist yet; "
                                "apply the workspace first")
        return self.client()

    def _computes(self) -> Any:
        from amlctl.providers.azure_v2.computes import V2Computes

        return V2Computes(self._require(), self.stack, self.policy, self.compute_settings)

    def _datastores(self) -> Any:
        from amlctl.providers.azure_v2.datastores import V2Datastores

        return V2Datastores(self._require(), self.policy, self.fingerprint_key)

    def _default_datastore(self) -> Any:
        """The default datastore with its key, read once per provider (two requests)."""
        if self._default is None:
            self._default = self._datastores().default()
        return self._default

    # state -------------------------------------------------------------------------------------

    def state_store(self) -> StateStore:
        """The v1 backend's state: the same blob (and lease) per stack, so both backends
        share one state and one lock."""
        sdk.load()  # first: names the extra when the SDK (and its storage client) is missing
        return super().state_store()

    def _default_container(self) -> Any | None:
        """The default datastore's container; None while the workspace does not exist."""
        if not self._open():
            return None
        return self._blob_container(self._default_datastore())

    def _state_container(self, account_url: str, container: str) -> Any:
        """The `state:` block's container: with AMLCTL_STATE_ACCESS_KEY's account key, else
        as the signed-in identity (Storage Blob Data Contributor)."""
        from azure.storage.blob import ContainerClient

        key = os.environ.get("AMLCTL_STATE_ACCESS_KEY")
        credential: Any = self.client()._credential
        if key:
            credential = self._account_key_credential(account_url, key)
        return ContainerClient(account_url, container, credential=credential)

    def _records(self) -> Any:
        from amlctl.providers.azure.records import Records

        if self._records_obj is None:
            self._records_obj = Records(self._blob_container(self._default_datastore()),
                                        self.policy)
        return self._records_obj

    def _jobs(self, tag: str | None = None) -> list[RunRecord]:
        """Jobs of the workspace; with `tag`, only those carrying that tag key (filtered by
        the service). Listed once per command (every run of a plan asks), until a submit or
        cancel of this provider changes them."""
        from amlctl.providers.azure_v2.jobs import record_of

        if None in self._listed_jobs:
            every = self._listed_jobs[None]
            return every if tag is None else [r for r in every if tag in r.tags]
        if tag not in self._listed_jobs:
            extra = {"tag": tag} if tag else {}
            found = call("listing jobs", lambda: list(self.client().jobs.list(**extra)),
                         self.policy)
            self._listed_jobs[tag] = [record_of(j) for j in found if j is not None]
        return self._listed_jobs[tag]

    # objects: one handler per kind ---------------------------------------------------------

    def _workspace_handler(self) -> KindHandler:
        return _Workspace(self)

    def _experiment_handler(self) -> KindHandler:
        return _Experiments(self)

    def _datastore_service(self) -> DatastoreService:
        return self._datastores()

    def workspace_exists(self) -> bool:
        return self._open()

    def read_all(self) -> dict[str, LiveObject]:
        self._records_obj = None  # records are listed afresh by each read
        return super().read_all()

    # uploads -----------------------------------------------------------------------------------

    def _datastore_object(self, name: str) -> Any | None:
        stores = self._datastores()
        return self._default_datastore() if name == DEFAULT_DATASTORE else stores.get(name)

    def _blob_container(self, ds: Any, account_key: str | None = None,
                        sas_token: str | None = None) -> Any:
        from amlctl.providers.azure_v2.datastores import container_client

        return container_client(ds, account_key, sas_token)

    # runs --------------------------------------------------------------------------------------

    def list_runs(self, experiment: str | None = None, spec_hash: str | None = None,
                  name: str | None = None) -> list[RunInfo]:
        if not self._open():
            return []
        wanted = self._run_filter(spec_hash, name)
        found = [r for r in self._jobs(tag=OWNER_TAG)
                 if (experiment is None or r.experiment == experiment)
                 and all(r.tags.get(k) == v for k, v in wanted.items())]
        return [self._info(r) for r in sorted(found, key=lambda r: r.created_at, reverse=True)]

    def _default_datastore_name(self, name: str) -> str:
        if name != DEFAULT_DATASTORE:
            return name
        return str(self._default_datastore().name)

    def submit_run(self, request: RunRequest) -> RunInfo:
        """Submit the command job under its deterministic name (the v1 backend's run id): a
        job of that name is this very submission made earlier (its answer was lost, the apply
        was killed, or another runner got there first), so it is returned, never duplicated.
        A deliberate resubmission (`--replace`) has a name of its own."""
        from amlctl.providers.azure_v2.jobs import build_job, record_of

        built = build_job(request, self.stack, self._default_datastore_name)
        self._forget()  # a job is added (or found): later listings must show it
        try:
            existing = self._get_job(built.name)
            if existing is not None:
                return self._info(record_of(existing))
            try:
                job = call(f"submitting job {built.name}",
                           lambda: self._submit_once(built), self.policy)
            except AzureCallError:
                job = self._get_job(built.name)  # created before the error: keep that one
                if job is None:
                    raise
        finally:
            built.cleanup()
        return self._info(record_of(job))

    def _submit_once(self, built: Any) -> Any:
        try:
            with sdk.stderr_to_log():
                return self.client().jobs.create_or_update(built.job)
        except Exception:
            # a create that reached the service must not be sent twice: look before a retry
            job = self._get_job(built.name)
            if job is not None:
                return job
            raise

    def _get_job(self, name: str) -> Any | None:
        def fetch() -> Any | None:
            try:
                return self.client().jobs.get(name)
            except Exception as e:
                if sdk.is_not_found(e):
                    return None
                raise

        return call(f"reading job {name}", fetch, self.policy)

    def cancel_run(self, run_id: str) -> RunInfo:
        from amlctl.providers.azure_v2.jobs import record_of

        job = self._get_job(run_id)
        if job is None:
            raise ProviderError(f"no run {run_id!r}")
        if self._info(record_of(job)).active:
            self._forget()
            poller = call(f"canceling job {run_id}",
                          lambda: self.client().jobs.begin_cancel(run_id), self.policy)
            call(f"waiting for job {run_id} to cancel", poller.result, self.policy)
            job = self._get_job(run_id) or job
        return self._info(record_of(job))

    def get_run(self, run_id: str) -> RunInfo | None:
        from amlctl.providers.azure_v2.jobs import record_of

        job = self._get_job(run_id)
        return self._info(record_of(job)) if job is not None else None

    def _history(self) -> Any:
        from amlctl.providers.azure_v2.history import JobHistory

        return JobHistory(self._require(), self.policy)

    def run_logs(self, run_id: str, role: str | None = None, follow: bool = False
                 ) -> Iterator[str]:
        """Each process's log from run history, lines prefixed by task (`[worker:0] ...`);
        `follow` keeps reading until the job ends. Every process's log is read, so `--role`
        picks one also while following (SDK v2's own stream shows rank 0 only)."""
        if self._get_job(run_id) is None:
            raise ProviderError(f"no run {run_id!r}")

        history = self._history()
        yield from only_role(history.follow(run_id) if follow else history.logs(run_id),
                             role, run_id)

    def run_roles(self, run_id: str) -> list[RoleStatus]:
        """Each process of the job (`ps:0`, `worker:1`, ...) with its state and the last line
        of its log file, for `amlctl watch`."""
        from amlctl.providers.azure_v2.history import declared_tasks
        from amlctl.providers.azure_v2.jobs import record_of

        job = self._get_job(run_id)
        if job is None:
            return []
        status = self._info(record_of(job)).status
        return self._history().roles(run_id, status, declared_tasks(job))

    def run_metrics(self, run_id: str) -> list[MetricSeries]:
        """The job's metrics from run history (where `mlflow.log_metric` values land)."""
        if self._get_job(run_id) is None:
            raise ProviderError(f"no run {run_id!r}")
        return self._history().metrics(run_id)


class _Workspace(Handler):
    """The workspace, owned through its `amlctl.stack` tag."""

    updatable = frozenset({"tags"})

    def __init__(self, provider: AzureV2Provider) -> None:
        self.p = provider

    def read_all(self) -> Found:
        p = self.p
        # the workspace opening the state just read, else a fresh read
        ws, p._opened = p._opened or p._workspace(), None
        p._exists = ws is not None
        if ws is None:
            return {}
        tags = dict(ws.tags or {})
        owner = tags.pop(OWNER_TAG, None)
        return {"": ({"name": ws.name, "subscription_id": p.workspace["subscription_id"],
                      "resource_group": ws.resource_group or p.workspace["resource_group"],
                      "location": ws.location, "tags": tags}, owner)}

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        p = self.p
        entities = sdk.load().entities
        if p._open():
            self.set_tags(attrs.get("tags") or {}, p.stack)
            return
        if p.workspace.get("create_resource_group"):
            self._ensure_resource_group(attrs["resource_group"], attrs["location"])
        ws = entities.Workspace(name=attrs["name"], location=attrs["location"],
                                resource_group=attrs["resource_group"],
                                tags={**(attrs.get("tags") or {}), OWNER_TAG: p.stack})
        poller = call(f"creating workspace {attrs['name']}",
                      lambda: p.client().workspaces.begin_create(ws), p.policy)
        call(f"waiting for workspace {attrs['name']}", poller.result, p.policy)
        p._exists = True
        # SDK v2 adds its own `createdByToolkit` tag: set exactly the manifest's tags, as the v1
        # backend leaves them, so neither backend plans a change to them next time
        self.set_tags(attrs.get("tags") or {}, p.stack)

    def _ensure_resource_group(self, name: str, location: str) -> None:
        """Create the resource group when it is missing, with the ARM client azure-ai-ml ships
        (the one it deploys workspaces with), on the same cloud and credential."""
        from azure.ai.ml._azure_environments import _get_base_url_from_metadata
        from azure.ai.ml._vendor.azure_resources import ResourceManagementClient
        from azure.ai.ml.constants._common import ArmConstants

        client = self.p.client()
        arm = ResourceManagementClient(client._credential, self.p.workspace["subscription_id"],
                                       base_url=_get_base_url_from_metadata(self.p._cloud),
                                       api_version=ArmConstants.AZURE_MGMT_RESOURCE_API_VERSION,
                                       retry_total=0)

        def ensure() -> None:
            if not arm.resource_groups.check_existence(name):
                arm.resource_groups.create_or_update(name, {"location": location})

        call(f"creating resource group {name}", ensure, self.p.policy)

    def set_tags(self, tags: dict[str, str], owner: str | None) -> None:
        """Set exactly these tags (and the owner tag) on the workspace."""
        p = self.p
        p._opened = None  # changed below: read it again next time
        ws = p._workspace()
        if ws is None:
            raise ProviderError(f"workspace {p.workspace['name']!r} does not exist")
        ws.tags = {**tags, **({OWNER_TAG: owner} if owner else {})}
        poller = call(f"updating tags of workspace {ws.name}",
                      lambda: p.client().workspaces.begin_update(ws), p.policy)
        call(f"waiting for workspace {ws.name}", poller.result, p.policy)

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        self.set_tags(attrs.get("tags") or {}, self.p.stack)

    def delete(self, address: Address, include_data: bool) -> None:
        p = self.p
        poller = call(f"deleting workspace {p.workspace['name']}",
                      lambda: p.client().workspaces.begin_delete(
                          p.workspace["name"], delete_dependent_resources=False), p.policy)
        call("waiting for the workspace delete", poller.result, p.policy)
        p._exists, p._default = False, None
        p._forget()

    def adopt(self, address: Address, live: LiveObject) -> None:
        self.set_tags(live.attrs.get("tags") or {}, self.p.stack)

    def create_notes(self, address: Address, attrs: dict[str, Any]) -> list[str]:
        """Say plainly that a workspace is to be created, and name the workspaces its
        resource group does have (a typo in the name would otherwise plan a whole new
        workspace quietly)."""
        from amlctl.providers.azure.workspace import describe_creation

        p = self.p
        group = p.workspace["resource_group"]

        def names() -> list[str] | None:
            try:
                with sdk.stderr_to_log():
                    return [str(w.name) for w in p.client().workspaces.list()]
            except Exception as e:
                if sdk.is_not_found(e):
                    return None  # no such resource group
                raise

        try:
            existing = call(f"listing workspaces of resource group {group}", names, p.policy)
        except AzureCallError as e:  # e.g. no right to list: the plan goes on without names
            log.info("cannot list the workspaces of %s: %s", group, e)
            existing = []
        return describe_creation(p.workspace, existing)


class _Experiments(Handler):
    """Experiments: SDK v2 has no API for them (a job names its `experiment_name`), so one is
    live when a record says so or a job of it exists; its owner is the record's, else the
    stack tag of its jobs. A delete marks the record archived (v2 cannot archive)."""

    updatable = frozenset({"tags"})

    def __init__(self, provider: AzureV2Provider) -> None:
        self.p = provider

    def read_all(self) -> Found:
        out: Found = {}
        archived = set()
        for name, record in self.p._records().list("experiment").items():
            if record.get(ARCHIVED):
                archived.add(name)
            else:
                out[name] = ({"tags": dict(record.get("tags") or {})}, record.get("owner"))
        for job in sorted(self.p._jobs(), key=lambda r: r.created_at):
            if job.experiment and job.experiment not in out and job.experiment not in archived:
                out[job.experiment] = ({"tags": {}}, job.tags.get(OWNER_TAG))
        return out

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        self.p._records().put("experiment", address.name, {
            "owner": self.p.stack, "tags": dict(attrs.get("tags") or {})})

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        self.create(address, attrs, secrets)

    def delete(self, address: Address, include_data: bool) -> None:
        self.p._records().put("experiment", address.name, {ARCHIVED: True})

    def adopt(self, address: Address, live: LiveObject) -> None:
        self.create(address, live.attrs, {})
