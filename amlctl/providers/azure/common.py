"""What the SDK v1 and v2 providers share beyond their handlers: state in a blob of the default
datastore (or the `state:` block's container), uploads to a blob datastore with the
manifest's key, and runs read back from the same tags."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlctl.errors import ProviderError
from amlctl.providers.azure.handlers import (
    ComputeService,
    DatastoreService,
    RecordedDatastores,
    RecordedUploads,
    RecordsService,
    TaggedComputes,
)
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.azure.runs import RUN_NAME_TAG, RunRecord
from amlctl.providers.base import OWNER_TAG, SPEC_HASH_TAG, ComputeStatus, FileStore, RunInfo
from amlctl.providers.dispatch import HandlerProvider, KindHandler

if TYPE_CHECKING:
    from amlctl.engine.state import StateStore

DEFAULT_DATASTORE = "default"


class EmptyStore:
    """The listing of an upload target that cannot exist yet (workspace not created)."""

    def list_files(self) -> dict[str, Any]:
        return {}

    def put_file(self, src: Path, relpath: str) -> Any:
        raise ProviderError("the workspace does not exist yet; apply it first")

    def delete_file(self, relpath: str) -> None:
        return None


class AzureBase(HandlerProvider):
    """The parts of an Azure ML provider that do not depend on the SDK generation."""

    in_place_where = " on Azure ML"
    policy: RetryPolicy
    state_lease_seconds: float
    _manifest_credentials: dict[str, dict[str, str]]

    # hooks each SDK fills in ---------------------------------------------------------------

    @abstractmethod
    def _workspace_handler(self) -> KindHandler:
        """The workspace's handler (the SDKs differ in how they reach it)."""

    @abstractmethod
    def _experiment_handler(self) -> KindHandler:
        """The experiments' handler (v1 has an API for them, v2 only jobs naming them)."""

    @abstractmethod
    def _computes(self) -> ComputeService:
        """The AmlCompute edge of the workspace (which must exist)."""

    @abstractmethod
    def _datastore_service(self) -> DatastoreService:
        """The datastore edge of the workspace (which must exist)."""

    @abstractmethod
    def _records(self) -> RecordsService:
        """amlctl's records in the default datastore."""

    @abstractmethod
    def _default_container(self) -> Any | None:
        """The default datastore's ContainerClient; None while the workspace does not exist."""

    @abstractmethod
    def _state_container(self, account_url: str, container: str) -> Any:
        """The ContainerClient the `state:` block names."""

    @abstractmethod
    def _datastore_object(self, name: str) -> Any | None:
        """The SDK's datastore of that name (`default` included), or None."""

    @abstractmethod
    def _blob_container(self, ds: Any, account_key: str | None = None,
                        sas_token: str | None = None) -> Any:
        """A ContainerClient of a blob datastore, with the given key or SAS if any."""

    # objects ---------------------------------------------------------------------------------

    def make_handlers(self) -> dict[str, KindHandler]:
        return {
            "workspace": self._workspace_handler(),
            "datastore": RecordedDatastores(self._datastore_service, self._records, self.stack),
            "compute": TaggedComputes(self._computes, self.workspace_exists),
            "experiment": self._experiment_handler(),
            "upload": RecordedUploads(self._records, self.file_store, self.stack),
        }

    def compute_status(self, name: str) -> ComputeStatus:
        return self._computes().status(name)

    # state -----------------------------------------------------------------------------------

    def state_store(self) -> StateStore:
        """A blob per stack (with a lease as its lock) in the workspace's default datastore,
        or where the manifest's `state:` block says; both SDKs use the same blob."""
        from amlctl.providers.azure.state import BlobState, default_blob_name

        config = self.state_config or {}
        blob_name = config.get("key") or default_blob_name(self.stack)
        if config:
            url = (f"https://{config['account']}.blob."
                   f"{config.get('endpoint') or 'core.windows.net'}")
            return BlobState(self.stack, lambda: self._state_container(url, config["container"]),
                             blob_name, self.state_dir, f"{url}/{config['container']}/{blob_name}",
                             self.state_lease_seconds)
        return BlobState(self.stack, self._default_container, blob_name, self.state_dir,
                         f"blob {blob_name} of the workspace's default datastore",
                         self.state_lease_seconds)

    @staticmethod
    def _account_key_credential(account_url: str, key: str) -> dict[str, str]:
        """AMLCTL_STATE_ACCESS_KEY as a storage credential for the account of `account_url`."""
        return {"account_name": account_url.split("//", 1)[1].split(".", 1)[0],
                "account_key": key}

    # uploads ---------------------------------------------------------------------------------

    def use_credentials(self, datastores: dict[str, dict[str, str]]) -> None:
        self._manifest_credentials = {k: dict(v) for k, v in datastores.items()}

    def file_store(self, datastore: str, target_path: str) -> FileStore:
        from amlctl.providers.azure.blobfiles import BlobFileStore

        if not self.workspace_exists():
            return EmptyStore()
        ds = self._datastore_object(datastore)
        if ds is None:
            return EmptyStore()  # registered later in the same apply
        # The manifest's key, when it has one: a key rotated on the account is then fixed by
        # the manifest alone (the registration is updated in the same apply, before uploads).
        given = self._manifest_credentials.get(datastore, {})
        return BlobFileStore(self._blob_container(ds, given.get("account_key"),
                                                  given.get("sas_token")),
                             target_path, self.policy)

    # runs ------------------------------------------------------------------------------------

    def _run_filter(self, spec_hash: str | None, name: str | None) -> dict[str, str]:
        """The tags a run of this stack carries, for `list_runs`'s filters."""
        tags = {OWNER_TAG: self.stack}
        if spec_hash:
            tags[SPEC_HASH_TAG] = spec_hash
        if name:
            tags[RUN_NAME_TAG] = name
        return tags

    @staticmethod
    def _info(record: RunRecord) -> RunInfo:
        return RunInfo(id=record.id, name=record.tags.get(RUN_NAME_TAG, ""),
                       experiment=record.experiment,
                       spec_hash=record.tags.get(SPEC_HASH_TAG, ""), status=record.status,
                       compute=record.target or "", created_at=record.created_at,
                       started_at=record.started_at, ended_at=record.ended_at,
                       error=record.error)
