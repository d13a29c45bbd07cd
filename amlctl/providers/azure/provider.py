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
from typing import Any

from amlctl.errors import ProviderError, UsageError
from amlctl.providers.azure import auth as auth_mod
from amlctl.providers.azure import computes as computes_mod
from amlctl.providers.azure import datastores as datastores_mod
from amlctl.providers.azure import sdk
from amlctl.providers.azure import workspace as workspace_mod
from amlctl.providers.azure.common import DEFAULT_DATASTORE, AzureBase
from amlctl.providers.azure.handlers import DatastoreService
from amlctl.providers.azure.retry import DEFAULT_POLICY, RetryPolicy
from amlctl.providers.azure.runs import RunService, SdkRunService
from amlctl.providers.azure.state import LEASE_SECONDS
from amlctl.providers.base import (
    OWNER_TAG,
    LiveObject,
    MetricSeries,
    RoleStatus,
    RunInfo,
    RunRequest,
)
from amlctl.providers.dispatch import Found, Handler, KindHandler
from amlctl.providers.logroles import FOLLOW_ONE_ROLE, only_role
from amlctl.providers.resources import Address

log = logging.getLogger("amlctl.azure")


class AzureProvider(AzureBase):
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
            credential: Any = self._account_key_credential(account_url, key)
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

    # objects: one handler per kind ---------------------------------------------------------

    def _workspace_handler(self) -> KindHandler:
        return _Workspace(self)

    def _experiment_handler(self) -> KindHandler:
        return _Experiments(self)

    def _datastore_service(self) -> DatastoreService:
        return _ListedDatastores(self)

    def workspace_exists(self) -> bool:
        return self._open() is not None

    # uploads -----------------------------------------------------------------------------------

    def _datastore_object(self, name: str) -> Any | None:
        return self._datastore_named(name)

    def _blob_container(self, ds: Any, account_key: str | None = None,
                        sas_token: str | None = None) -> Any:
        if getattr(ds, "datastore_type", "") != "AzureBlob":
            raise ProviderError(f"datastore {ds.name!r} is not a blob container; the azure "
                                "backend uploads to blob datastores only")
        return sdk.container_client(ds, account_key, sas_token)

    # runs --------------------------------------------------------------------------------------

    def _datastore_for(self, name: str) -> Any:
        ds = self._datastore_named(name)
        if ds is None:
            raise ProviderError(f"the workspace has no datastore {name!r}")
        return ds

    def list_runs(self, experiment: str | None = None, spec_hash: str | None = None,
                  name: str | None = None) -> list[RunInfo]:
        if self._open() is None:
            return []
        if experiment is not None and experiment not in self.runs().experiments():
            return []
        return [self._info(r)
                for r in self.runs().find(experiment, self._run_filter(spec_hash, name))]

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

    def run_roles(self, run_id: str) -> list[RoleStatus]:
        """Each process of the run (`ps:0`, `worker:1`, ...) with its state and the last line
        of its log file, for `amlctl watch`."""
        return self.runs().roles(run_id)

    def run_metrics(self, run_id: str) -> list[MetricSeries]:
        from amlctl.providers.azure.metrics import read_run_metrics

        return read_run_metrics(self._require(), run_id, self.policy)


class _ListedDatastores:
    """v1's datastore edge for the shared handler: the listing is kept (uploads look their
    datastore up in it) and dropped when a registration changes."""

    def __init__(self, provider: AzureProvider) -> None:
        self.p = provider

    def read_all(self) -> dict[str, dict[str, Any]]:
        self.p._store_objects = self.p._datastores().listed()
        return datastores_mod.normalise_all(self.p._store_objects, self.p.fingerprint_key)

    def register(self, name: str, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        self.p._store_objects = None
        self.p._datastores().register(name, attrs, secrets, overwrite=True)

    def unregister(self, name: str) -> None:
        self.p._store_objects = None
        self.p._datastores().unregister(name)


class _Workspace(Handler):
    """The workspace, owned through its `amlctl.stack` tag."""

    updatable = frozenset({"tags"})

    def __init__(self, provider: AzureProvider) -> None:
        self.p = provider

    def read_all(self) -> Found:
        ws = self.p._open()
        return {"": workspace_mod.read(ws)} if ws is not None else {}

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        auth, _ = self.p._credentials()
        self.p._ws = workspace_mod.create_workspace(
            attrs, auth, self.p.stack, bool(self.p.workspace.get("create_resource_group")),
            self.p.policy)

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        workspace_mod.set_tags(self.p._require(), attrs.get("tags") or {}, self.p.stack,
                               self.p.policy)

    def delete(self, address: Address, include_data: bool) -> None:
        workspace_mod.delete_workspace(self.p._require(), self.p.policy)
        self.p._ws = None
        self.p._forget()

    def adopt(self, address: Address, live: LiveObject) -> None:
        workspace_mod.set_tags(self.p._require(), live.attrs.get("tags") or {}, self.p.stack,
                               self.p.policy)

    def create_notes(self, address: Address, attrs: dict[str, Any]) -> list[str]:
        """Say plainly that a workspace is to be created, and name the workspaces its
        resource group does have (a typo in the name would otherwise plan a whole new
        workspace quietly)."""
        auth, _ = self.p._credentials()
        return workspace_mod.creation_notes(self.p.workspace, auth, self.p.policy)


class _Experiments(Handler):
    """Experiments in run history, owned through their `amlctl.stack` tag; a delete
    archives (Azure ML never deletes an experiment that has runs)."""

    updatable = frozenset({"tags"})

    def __init__(self, provider: AzureProvider) -> None:
        self.p = provider

    def read_all(self) -> Found:
        out: Found = {}
        for name, tags in self.p.runs().experiments().items():
            owner = tags.pop(OWNER_TAG, None)
            out[name] = ({"tags": tags}, owner)
        return out

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        self.p.runs().ensure_experiment(address.name, {**attrs.get("tags", {}),
                                                       OWNER_TAG: self.p.stack}, [])

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        live = self.p.runs().experiments().get(address.name, {})
        wanted = {**attrs.get("tags", {}), OWNER_TAG: self.p.stack}
        self.p.runs().ensure_experiment(address.name, wanted,
                                        [k for k in live if k not in wanted])

    def delete(self, address: Address, include_data: bool) -> None:
        if address.name in self.p.runs().experiments():
            self.p.runs().archive_experiment(address.name)

    def adopt(self, address: Address, live: LiveObject) -> None:
        self.p.runs().ensure_experiment(address.name, {OWNER_TAG: self.p.stack}, [])
