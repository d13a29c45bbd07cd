"""Handlers both Azure backends (SDK v1 and v2) use for the kinds they treat alike.

Clusters carry the owner tag; datastores and uploads, which Azure ML cannot tag, are owned
through amlctl's records in the default datastore (records.py). Each backend hands these
handlers its own service objects (the SDK v1 or v2 edge) with the same small interface, so the
ownership rules live here once and the switch between SDKs cannot plan a change.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from amlctl.errors import UsageError
from amlctl.providers.azure import computes as computes_mod
from amlctl.providers.azure import datastores as datastores_mod
from amlctl.providers.base import ComputeStatus, FileStore, LiveObject
from amlctl.providers.dispatch import Found, Handler
from amlctl.providers.resources import Address

UPLOAD_UPDATABLE = frozenset({"datastore", "target_path", "delete_extra", "exclude",
                              "src_dir"})


class ComputeService(Protocol):
    """A backend's AmlCompute edge (computes.Computes on v1, V2Computes on v2)."""

    def read_all(self) -> dict[str, tuple[dict[str, Any], str | None]]: ...
    def create(self, name: str, attrs: dict[str, Any], secrets: dict[str, str]) -> Any: ...
    def update(self, name: str, attrs: dict[str, Any], secrets: dict[str, str]) -> Any: ...
    def delete(self, name: str) -> None: ...
    def preflight(self, attrs: dict[str, Any]) -> list[str]: ...
    def status(self, name: str) -> ComputeStatus: ...


class DatastoreService(Protocol):
    """A backend's datastore edge: normalised listing, registration, unregistration."""

    def read_all(self) -> dict[str, dict[str, Any]]: ...
    def register(self, name: str, attrs: dict[str, Any], secrets: dict[str, str]) -> Any: ...
    def unregister(self, name: str) -> None: ...


class RecordsService(Protocol):
    """amlctl's records in the default datastore (records.Records)."""

    def list(self, kind: str) -> dict[str, dict[str, Any]]: ...
    def put(self, kind: str, name: str, record: dict[str, Any]) -> None: ...
    def delete(self, kind: str, name: str) -> None: ...


class TaggedComputes(Handler):
    """AmlCompute clusters, owned through the `amlctl.stack` tag."""

    updatable = computes_mod.UPDATABLE

    def __init__(self, service: Callable[[], ComputeService],
                 workspace_exists: Callable[[], bool]) -> None:
        self.service = service
        self.workspace_exists = workspace_exists

    def read_all(self) -> Found:
        return self.service().read_all()

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        self.service().create(address.name, attrs, secrets)

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        self.service().update(address.name, attrs, secrets)

    def delete(self, address: Address, include_data: bool) -> None:
        self.service().delete(address.name)

    def adopt(self, address: Address, live: LiveObject) -> None:
        raise UsageError(f"{address}: Azure ML cannot re-tag an existing cluster, so amlctl "
                         "cannot adopt it; let amlctl create a cluster under a new name")

    def preflight(self, address: Address, attrs: dict[str, Any]) -> list[str]:
        """VM size offered in the region, vCPU quota: what Azure reports only on create."""
        if not self.workspace_exists():
            return []
        return self.service().preflight(attrs)


class RecordedDatastores(Handler):
    """Registered datastores, owned through amlctl's records."""

    updatable = datastores_mod.UPDATABLE

    def __init__(self, service: Callable[[], DatastoreService],
                 records: Callable[[], RecordsService], stack: str) -> None:
        self.service = service
        self.records = records
        self.stack = stack

    def read_all(self) -> Found:
        owners = {n: r.get("owner") for n, r in self.records().list("datastore").items()}
        return {name: (attrs, owners.get(name))
                for name, attrs in self.service().read_all().items()}

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        # the record goes first: a crash then leaves an owned name, never an orphan
        self.records().put("datastore", address.name, {"owner": self.stack})
        self.service().register(address.name, attrs, secrets)

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        self.service().register(address.name, attrs, secrets)

    def delete(self, address: Address, include_data: bool) -> None:
        self.service().unregister(address.name)
        self.records().delete("datastore", address.name)

    def adopt(self, address: Address, live: LiveObject) -> None:
        self.records().put("datastore", address.name, {"owner": self.stack})


class RecordedUploads(Handler):
    """Uploads: a record of where each one syncs to (the files are the datastore's)."""

    updatable = UPLOAD_UPDATABLE

    def __init__(self, records: Callable[[], RecordsService],
                 file_store: Callable[[str, str], FileStore], stack: str) -> None:
        self.records = records
        self.file_store = file_store
        self.stack = stack

    def read_all(self) -> Found:
        return {name: ({"datastore": record.get("datastore"),
                        "target_path": record.get("target_path")}, record.get("owner"))
                for name, record in self.records().list("upload").items()}

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        self.records().put("upload", address.name, {"owner": self.stack,
                                                    "datastore": attrs["datastore"],
                                                    "target_path": attrs["target_path"]})

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        self.create(address, attrs, secrets)

    def delete(self, address: Address, include_data: bool) -> None:
        record = self.records().list("upload").get(address.name)
        if record is not None and include_data:
            store = self.file_store(record["datastore"], record["target_path"])
            for relpath in store.list_files():
                store.delete_file(relpath)
        self.records().delete("upload", address.name)
