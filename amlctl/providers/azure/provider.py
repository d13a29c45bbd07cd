"""AzureProvider: the provider interface over azureml-sdk (v1).

Ownership: the workspace, clusters and experiments carry the `amlctl.stack` tag; datastores
and uploads, which Azure ML cannot tag, are recorded under `.amlctl/objects/` in the default
datastore (see records.py). Nothing here imports azureml until the first call that needs it.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlctl.errors import ProviderError, UsageError
from amlctl.providers.azure import auth as auth_mod
from amlctl.providers.azure import computes as computes_mod
from amlctl.providers.azure import datastores as datastores_mod
from amlctl.providers.azure import sdk
from amlctl.providers.azure import workspace as workspace_mod
from amlctl.providers.azure.retry import DEFAULT_POLICY, RetryPolicy
from amlctl.providers.azure.runs import RUN_NAME_TAG, RunRecord, RunService, SdkRunService
from amlctl.providers.azure.state import LEASE_SECONDS
from amlctl.providers.base import (
    OWNER_TAG,
    SPEC_HASH_TAG,
    ComputeStatus,
    FileStore,
    LiveObject,
    MetricSeries,
    Provider,
    RunInfo,
    RunRequest,
)
from amlctl.providers.logroles import FOLLOW_ONE_ROLE, only_role

if TYPE_CHECKING:
    from amlctl.engine.state import StateStore

log = logging.getLogger("amlctl.azure")

DEFAULT_DATASTORE = "default"
UPDATABLE = {
    "workspace": frozenset({"tags"}),
    "compute": computes_mod.UPDATABLE,
    "datastore": datastores_mod.UPDATABLE,
    "experiment": frozenset({"tags"}),
    "upload": frozenset({"datastore", "target_path", "delete_extra", "exclude", "src_dir"}),
}


class _EmptyStore:
    """The listing of an upload target that cannot exist yet (workspace not created)."""

    def list_files(self) -> dict[str, Any]:
        return {}

    def put_file(self, src: Path, relpath: str) -> Any:
        raise ProviderError("the workspace does not exist yet; apply it first")

    def delete_file(self, relpath: str) -> None:
        return None


class AzureProvider(Provider):
    """One Azure ML workspace of one stack."""

    name = "azure"

    def __init__(self, workspace: dict[str, Any], stack: str, state_dir: Path, *,
                 auth: Any = None, cloud: str | None = None,
                 run_service: RunService | None = None, policy: RetryPolicy = DEFAULT_POLICY,
                 compute_settings: computes_mod.ComputeSettings | None = None) -> None:
        super().__init__(workspace, stack, state_dir)
        self._auth = auth
        self._cloud = cloud
        self._run_service = run_service
        self.policy = policy
        self.compute_settings = compute_settings
        self._ws: Any = None
        self._manifest_credentials: dict[str, dict[str, str]] = {}
        self.state_lease_seconds = LEASE_SECONDS
        self._forget()

    def _forget(self) -> None:
        """Drop what one command keeps of what it read (a plan reads each list once)."""
        self._default_store: Any = None  # the default datastore (SDK object)
        self._records_obj: Any = None
        self._store_objects: dict[str, Any] | None = None  # name -> SDK datastore, listed

    # plumbing ----------------------------------------------------------------------------------

    def _credentials(self) -> tuple[Any, str]:
        if self._auth is None:
            credential = auth_mod.resolve()
            log.info("authenticating as %s", credential.description)
            self._auth, self._cloud = credential.auth, credential.cloud
        return self._auth, self._cloud or auth_mod.cloud_name()

    def _open(self) -> Any | None:
        if self._ws is None:
            auth, cloud = self._credentials()
            self._ws = workspace_mod.open_workspace(self.workspace, auth, cloud, self.policy)
        return self._ws

    def _require(self) -> Any:
        return workspace_mod.require(self._open(), self.workspace["name"])

    def _computes(self) -> computes_mod.Computes:
        return computes_mod.Computes(self._require(), self.stack, self.policy,
                                     self.compute_settings)

    def _datastores(self) -> datastores_mod.Datastores:
        return datastores_mod.Datastores(self._require(), self.policy, self.fingerprint_key)

    # state -------------------------------------------------------------------------------------

    def state_store(self) -> StateStore:
        """A blob per stack (with a lease as its lock) in the workspace's default datastore,
        or where the manifest's `state:` block says."""
        from amlctl.providers.azure.state import BlobState, default_blob_name

        config = self.state_config or {}
        blob_name = config.get("key") or default_blob_name(self.stack)
        if config:
            url = f"https://{config['account']}.blob.{config.get('endpoint') or 'core.windows.net'}"
            location = f"{url}/{config['container']}/{blob_name}"
            return BlobState(self.stack, lambda: self._state_container(url, config["container"]),
                             blob_name, self.state_dir, location, self.state_lease_seconds)
        return BlobState(self.stack, self._default_container, blob_name, self.state_dir,
                         f"blob {blob_name} of the workspace's default datastore",
                         self.state_lease_seconds)

    def _default_container(self) -> Any | None:
        """The default datastore's container; None while the workspace does not exist."""
        if self._open() is None:
            return None
        return sdk.container_client(self._default(), retry_policy=sdk.state_blob_retry())

    def _state_container(self, account_url: str, container: str) -> Any:
        """A container named by the `state:` block: the account key from
        AMLCTL_STATE_ACCESS_KEY, else the signed-in identity (Storage Blob Data Contributor)."""
        blob = sdk.blob_module()
        key = os.environ.get("AMLCTL_STATE_ACCESS_KEY")
        if key:
            credential: Any = {"account_name": account_url.split("//", 1)[1].split(".", 1)[0],
                               "account_key": key}
        else:
            credential = self._credentials()[0]  # azureml auth objects are token credentials
        return blob.BlobServiceClient(account_url, credential=credential,
                                      retry_policy=sdk.state_blob_retry()).get_container_client(
            container)

    def _default(self) -> Any:
        if self._default_store is None:
            self._default_store = self._datastores().default()
        return self._default_store

    def _datastore_named(self, name: str) -> Any | None:
        """The SDK datastore of that name, from the listing when read_all made one."""
        if name == DEFAULT_DATASTORE:
            return self._default()
        if self._store_objects is not None:
            return self._store_objects.get(name)
        return self._datastores().get(name)

    def _records(self) -> Any:
        from amlctl.providers.azure.records import Records
        from amlctl.providers.azure.sdk import container_client

        if self._records_obj is None:
            self._records_obj = Records(container_client(self._default()), self.policy)
        return self._records_obj

    def runs(self) -> RunService:
        """The run history edge (the SDK's unless one was given)."""
        if self._run_service is None:
            self._run_service = SdkRunService(self._require(), self.policy)
        return self._run_service

    # objects -----------------------------------------------------------------------------------

    def read_all(self) -> dict[str, LiveObject]:
        ws = self._open()
        if ws is None:
            return {}
        attrs, owner = workspace_mod.read(ws)
        out = {"workspace": LiveObject("workspace", attrs, owner)}
        for name, (compute, compute_owner) in self._computes().read_all().items():
            out[f"compute.{name}"] = LiveObject(f"compute.{name}", compute, compute_owner)
        records = self._records()
        owners = {n: r.get("owner") for n, r in records.list("datastore").items()}
        self._store_objects = self._datastores().listed()
        for name, ds in datastores_mod.normalise_all(self._store_objects,
                                                      self.fingerprint_key).items():
            out[f"datastore.{name}"] = LiveObject(f"datastore.{name}", ds, owners.get(name))
        for name, tags in self.runs().experiments().items():
            owner_tag = tags.pop(OWNER_TAG, None)
            out[f"experiment.{name}"] = LiveObject(f"experiment.{name}", {"tags": tags},
                                                   owner_tag)
        for name, record in records.list("upload").items():
            out[f"upload.{name}"] = LiveObject(
                f"upload.{name}", {"datastore": record.get("datastore"),
                                   "target_path": record.get("target_path")},
                record.get("owner"))
        return out

    def updatable_fields(self, kind: str) -> frozenset[str]:
        return UPDATABLE.get(kind, frozenset())

    def create(self, address: str, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        kind, _, name = address.partition(".")
        if kind == "workspace":
            auth, _ = self._credentials()
            self._ws = workspace_mod.create_workspace(
                attrs, auth, self.stack, bool(self.workspace.get("create_resource_group")),
                self.policy)
        elif kind == "compute":
            self._computes().create(name, attrs, secrets)
        elif kind == "datastore":
            # the record goes first: a crash then leaves an owned name, never an orphan
            self._records().put("datastore", name, {"owner": self.stack})
            self._store_objects = None
            self._datastores().register(name, attrs, secrets, overwrite=True)
        elif kind == "experiment":
            self.runs().ensure_experiment(name, {**attrs.get("tags", {}),
                                                 OWNER_TAG: self.stack}, [])
        elif kind == "upload":
            self._record_upload(name, attrs)
        else:
            raise ProviderError(f"{address}: the azure backend cannot create a {kind}")

    def _record_upload(self, name: str, attrs: dict[str, Any]) -> None:
        self._records().put("upload", name, {"owner": self.stack,
                                             "datastore": attrs["datastore"],
                                             "target_path": attrs["target_path"]})

    def update(self, address: str, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        kind, _, name = address.partition(".")
        refused = set(changed) - self.updatable_fields(kind)
        if refused:
            raise ProviderError(f"{address}: {', '.join(sorted(refused))} cannot change in "
                                "place on Azure ML")
        if kind == "workspace":
            workspace_mod.set_tags(self._require(), attrs.get("tags") or {}, self.stack,
                                   self.policy)
        elif kind == "compute":
            self._computes().update(name, attrs)
        elif kind == "datastore":
            self._store_objects = None
            self._datastores().register(name, attrs, secrets, overwrite=True)
        elif kind == "experiment":
            live = self.runs().experiments().get(name, {})
            wanted = {**attrs.get("tags", {}), OWNER_TAG: self.stack}
            self.runs().ensure_experiment(name, wanted, [k for k in live if k not in wanted])
        elif kind == "upload":
            self._record_upload(name, attrs)

    def delete(self, address: str, *, include_data: bool = False) -> None:
        kind, _, name = address.partition(".")
        if self._open() is None:
            return
        if kind == "workspace":
            workspace_mod.delete_workspace(self._require(), self.policy)
            self._ws = None
            self._forget()
        elif kind == "compute":
            self._computes().delete(name)
        elif kind == "datastore":
            self._store_objects = None
            self._datastores().unregister(name)
            self._records().delete("datastore", name)
        elif kind == "experiment":
            if name in self.runs().experiments():
                self.runs().archive_experiment(name)
        elif kind == "upload":
            record = self._records().list("upload").get(name)
            if record is not None and include_data:
                store = self.file_store(record["datastore"], record["target_path"])
                for relpath in store.list_files():
                    store.delete_file(relpath)
            self._records().delete("upload", name)

    def adopt(self, address: str) -> LiveObject:
        kind, _, name = address.partition(".")
        live = self.read_all().get(address)
        if live is None:
            raise UsageError(f"{address} does not exist in workspace {self.workspace['name']!r}")
        if live.owner not in (None, self.stack):
            raise UsageError(f"{address} belongs to stack {live.owner!r}")
        if kind == "workspace":
            workspace_mod.set_tags(self._require(), live.attrs.get("tags") or {}, self.stack,
                                   self.policy)
        elif kind == "datastore":
            self._records().put("datastore", name, {"owner": self.stack})
        elif kind == "experiment":
            self.runs().ensure_experiment(name, {OWNER_TAG: self.stack}, [])
        elif kind == "compute":
            raise UsageError(f"{address}: Azure ML cannot re-tag an existing cluster, so amlctl "
                             "cannot adopt it; let amlctl create a cluster under a new name")
        else:
            raise UsageError(f"{address}: cannot adopt a {kind}")
        return LiveObject(address, live.attrs, self.stack)

    def use_credentials(self, datastores: dict[str, dict[str, str]]) -> None:
        self._manifest_credentials = {k: dict(v) for k, v in datastores.items()}

    def create_notes(self, address: str, attrs: dict[str, Any]) -> list[str]:
        """A workspace to create: say so plainly, and name the workspaces its resource group
        does have (a typo in the name would otherwise plan a whole new workspace quietly)."""
        if address != "workspace":
            return []
        auth, _ = self._credentials()
        return workspace_mod.creation_notes(self.workspace, auth, self.policy)

    def preflight(self, address: str, attrs: dict[str, Any]) -> list[str]:
        """Problems Azure would report only when applying (VM size offered, vCPU quota)."""
        if not address.startswith("compute.") or self._open() is None:
            return []
        return self._computes().preflight(attrs)

    # uploads -----------------------------------------------------------------------------------

    def file_store(self, datastore: str, target_path: str) -> FileStore:
        from amlctl.providers.azure.blobfiles import BlobFileStore

        if self._open() is None:
            return _EmptyStore()
        ds = self._datastore_named(datastore)
        if ds is None:
            return _EmptyStore()  # registered later in the same apply
        if getattr(ds, "datastore_type", "") != "AzureBlob":
            raise ProviderError(f"datastore {datastore!r} is not a blob container; the azure "
                                "backend uploads to blob datastores only")
        from amlctl.providers.azure.sdk import container_client

        # The manifest's key, when it has one: a key rotated on the account is then fixed by
        # the manifest alone (the registration is updated in the same apply, before uploads).
        given = self._manifest_credentials.get(datastore, {})
        return BlobFileStore(container_client(ds, given.get("account_key"),
                                              given.get("sas_token")),
                             target_path, self.policy)

    # runs --------------------------------------------------------------------------------------

    def _datastore_for(self, name: str) -> Any:
        ds = self._datastore_named(name)
        if ds is None:
            raise ProviderError(f"the workspace has no datastore {name!r}")
        return ds

    def _info(self, record: RunRecord) -> RunInfo:
        return RunInfo(id=record.id, name=record.tags.get(RUN_NAME_TAG, ""),
                       experiment=record.experiment,
                       spec_hash=record.tags.get(SPEC_HASH_TAG, ""), status=record.status,
                       compute=record.target or "", created_at=record.created_at,
                       started_at=record.started_at, ended_at=record.ended_at,
                       error=record.error)

    def list_runs(self, experiment: str | None = None, spec_hash: str | None = None,
                  name: str | None = None) -> list[RunInfo]:
        if self._open() is None:
            return []
        if experiment is not None and experiment not in self.runs().experiments():
            return []
        tags = {OWNER_TAG: self.stack}
        if spec_hash:
            tags[SPEC_HASH_TAG] = spec_hash
        if name:
            tags[RUN_NAME_TAG] = name
        return [self._info(r) for r in self.runs().find(experiment, tags)]

    def submit_run(self, request: RunRequest) -> RunInfo:
        from amlctl.providers.azure.runs import build_run
        from amlctl.runs.identity import run_id

        built = build_run(request, self.stack, self._datastore_for)
        try:
            record = self.runs().submit(request.run.experiment, built.config, built.tags,
                                        run_id(self.stack, request.name, request.spec_hash,
                                               request.supersedes))
        finally:
            built.cleanup()
        return self._info(record)

    def cancel_run(self, run_id: str) -> RunInfo:
        return self._info(self.runs().cancel(run_id))

    def get_run(self, run_id: str) -> RunInfo | None:
        record = self.runs().get(run_id)
        return self._info(record) if record else None

    def run_logs(self, run_id: str, role: str | None = None, follow: bool = False
                 ) -> Iterator[str]:
        if follow and role is not None:
            raise UsageError(FOLLOW_ONE_ROLE)
        yield from only_role(self.runs().logs(run_id, follow), role, run_id)

    def run_metrics(self, run_id: str) -> list[MetricSeries]:
        from amlctl.providers.azure.metrics import read_run_metrics

        return read_run_metrics(self._require(), run_id, self.policy)

    # status ------------------------------------------------------------------------------------

    def compute_status(self, name: str) -> ComputeStatus:
        return self._computes().status(name)
