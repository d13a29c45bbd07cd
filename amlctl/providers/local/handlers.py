"""The local backend's objects, one handler per kind: the workspace is a row and a folder,
every other kind a row of the store's objects table (a datastore also a folder)."""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING, Any

from amlctl.errors import ProviderError
from amlctl.providers.base import TERMINAL_RUN_STATES, LiveObject
from amlctl.providers.dispatch import Found, Handler
from amlctl.providers.resources import Address

if TYPE_CHECKING:
    from amlctl.providers.local.provider import LocalProvider

DEFAULT_DATASTORE = "default"
_UPLOAD_RECORD = ("datastore", "target_path")


class WorkspaceHandler(Handler):
    """The workspace: a store row (found by name) and its folder."""

    updatable = frozenset({"tags"})

    def __init__(self, provider: LocalProvider) -> None:
        self.p = provider

    def read_all(self) -> Found:
        ws = self.p.find_workspace()
        if ws is None:
            return {}
        return {"": ({"name": ws.name, "subscription_id": ws.subscription_id,
                      "resource_group": ws.resource_group, "location": ws.location,
                      "tags": ws.tags}, ws.owner)}

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        ws = self.p.store.create_workspace(
            attrs["subscription_id"], attrs["resource_group"], attrs["name"],
            attrs["location"], attrs.get("tags") or {}, self.p.stack,
            built_in={"datastore": {DEFAULT_DATASTORE: {"type": "workspace_default"}}})
        self.p.datastore_dir(DEFAULT_DATASTORE, ws).mkdir(parents=True, exist_ok=True)
        (self.p.workspace_dir(ws) / "runs").mkdir(exist_ok=True)

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        ws = self.p.require_workspace()
        self.p.store.update_workspace(ws.id, attrs.get("tags") or {}, ws.owner)

    def delete(self, address: Address, include_data: bool) -> None:
        ws = self.p.require_workspace()
        folder = self.p.workspace_dir(ws)
        # Datastore folders hold the data: kept unless asked, as deleting an Azure ML
        # workspace keeps its storage account.
        doomed = [folder] if include_data else [
            child for child in (folder.iterdir() if folder.is_dir() else ())
            if child.name != "datastores"]
        for path in doomed:
            shutil.rmtree(path, ignore_errors=True)
        self.p.store.delete_workspace(ws.id)

    def adopt(self, address: Address, live: LiveObject) -> None:
        ws = self.p.require_workspace()
        self.p.store.update_workspace(ws.id, ws.tags, self.p.stack)


class ObjectHandler(Handler):
    """A kind kept as rows of the store's objects table, attributes as given (they already
    hold secret fingerprints, never values)."""

    def __init__(self, provider: LocalProvider, kind: str, updatable: frozenset[str]) -> None:
        self.p = provider
        self.kind = kind
        self.updatable = updatable

    def read_all(self) -> Found:
        ws = self.p.find_workspace()
        if ws is None:
            return {}
        return {obj.name: (obj.attrs, obj.owner)
                for obj in self.p.store.list_objects(ws.id, self.kind)}

    def stored(self, attrs: dict[str, Any]) -> dict[str, Any]:
        """What the store keeps of the attributes."""
        return dict(attrs)

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        ws = self.p.require_workspace()
        existing = self.p.store.get_object(ws.id, self.kind, address.name)
        if existing is not None and existing.owner not in (None, self.p.stack):
            raise ProviderError(f"{address} belongs to stack {existing.owner!r}")
        self.prepare(address)
        self.p.store.put_object(ws.id, self.kind, address.name, self.stored(attrs),
                                self.p.stack)

    def prepare(self, address: Address) -> None:
        """What must exist before the row is written."""

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        ws = self.p.require_workspace()
        current = self.p.store.get_object(ws.id, self.kind, address.name)
        if current is None:
            raise ProviderError(f"{address} does not exist")
        merged = dict(current.attrs)
        merged.update({k: v for k, v in self.stored(attrs).items() if k in changed})
        self.p.store.put_object(ws.id, self.kind, address.name, merged, current.owner)

    def delete(self, address: Address, include_data: bool) -> None:
        ws = self.p.require_workspace()
        current = self.p.store.get_object(ws.id, self.kind, address.name)
        if current is not None:
            self.before_delete(address, current.attrs, include_data)
            self.p.store.delete_object(ws.id, self.kind, address.name)

    def before_delete(self, address: Address, attrs: dict[str, Any], include_data: bool
                      ) -> None:
        """What goes with the row (files, runs)."""

    def adopt(self, address: Address, live: LiveObject) -> None:
        ws = self.p.require_workspace()
        self.p.store.put_object(ws.id, self.kind, address.name, live.attrs, self.p.stack)


class DatastoreHandler(ObjectHandler):
    """A datastore is a folder of the workspace."""

    def prepare(self, address: Address) -> None:
        self.p.datastore_dir(address.name).mkdir(parents=True, exist_ok=True)


class ComputeHandler(ObjectHandler):
    """A compute is a node pool; deleting it cancels the runs still on it."""

    def before_delete(self, address: Address, attrs: dict[str, Any], include_data: bool
                      ) -> None:
        ws = self.p.require_workspace()
        for run in self.p.store.list_runs(ws.id):
            if run.compute == address.name and run.status not in TERMINAL_RUN_STATES:
                self.p.cancel_run(run.id)


class UploadHandler(ObjectHandler):
    """An upload keeps only where it goes; its files are in the datastore folder."""

    def stored(self, attrs: dict[str, Any]) -> dict[str, Any]:
        return {k: attrs[k] for k in _UPLOAD_RECORD}

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        # every recorded field follows the manifest (the record has no other fields)
        super().update(address, attrs, list(_UPLOAD_RECORD), secrets)

    def before_delete(self, address: Address, attrs: dict[str, Any], include_data: bool
                      ) -> None:
        if include_data:
            store = self.p.file_store(attrs["datastore"], attrs["target_path"])
            for relpath in store.list_files():
                store.delete_file(relpath)


def handlers(provider: LocalProvider) -> dict[str, Handler]:
    """The local backend's handler table."""
    updatable_upload = frozenset({"datastore", "target_path", "delete_extra", "exclude",
                                  "src_dir"})
    return {
        "workspace": WorkspaceHandler(provider),
        "datastore": DatastoreHandler(provider, "datastore", frozenset({
            "account_name", "container_name", "share_name", "account_key", "sas_token",
            "endpoint"})),
        "compute": ComputeHandler(provider, "compute", frozenset({
            "min_nodes", "max_nodes", "idle_seconds_before_scaledown", "tags"})),
        "experiment": ObjectHandler(provider, "experiment", frozenset({"tags"})),
        "upload": UploadHandler(provider, "upload", updatable_upload),
    }


__all__ = ["DEFAULT_DATASTORE", "handlers"]
