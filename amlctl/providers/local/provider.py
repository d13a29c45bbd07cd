"""The local backend: a workspace on this machine (SQLite state, folders, real processes).

Same semantics as Azure ML where it matters to a plan: computes change min/max nodes, idle time
and tags in place and are replaced for anything else; datastores are folders; account keys are
never stored, only their fingerprint; every object carries its owner stack.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlctl.errors import ProviderError, UsageError
from amlctl.providers.base import (
    ComputeStatus,
    FileStore,
    LiveObject,
    MetricSeries,
    Provider,
    RoleStatus,
    RunInfo,
    RunRequest,
)
from amlctl.providers.local import pool
from amlctl.providers.local.store import RunRow, Store, WorkspaceRow

if TYPE_CHECKING:
    from amlctl.metrics.filestore import StoreReader

UPDATABLE = {
    "workspace": frozenset({"tags"}),
    "compute": frozenset({"min_nodes", "max_nodes", "idle_seconds_before_scaledown", "tags"}),
    "datastore": frozenset({"account_name", "container_name", "share_name", "account_key",
                            "sas_token", "endpoint"}),
    "experiment": frozenset({"tags"}),
    "upload": frozenset({"datastore", "target_path", "delete_extra", "exclude", "src_dir"}),
}
DEFAULT_DATASTORE = "default"
# What Azure ML fills in for a cluster made elsewhere (portal, CLI) when not given.
_SERVICE_DEFAULTS = {
    "compute": {"vm_priority": "dedicated", "min_nodes": 0,
                "idle_seconds_before_scaledown": 1800, "vnet": None, "tags": {}},
    "experiment": {"tags": {}},
}
_UPLOAD_RECORD = ("datastore", "target_path")


class LocalProvider(Provider):
    """A workspace in `<state_dir>`: state.db plus one folder per workspace."""

    name = "local"

    def __init__(self, workspace: dict[str, Any], stack: str, state_dir: Path) -> None:
        super().__init__(workspace, stack, state_dir)
        self.home = state_dir
        self.store = Store(state_dir / "state.db")
        self._metric_reader: StoreReader | None = None

    def close(self) -> None:
        """Close the database."""
        self.store.close()

    # workspace -------------------------------------------------------------------------------

    def _workspace(self) -> WorkspaceRow | None:
        """The manifest's workspace, found by name (so a moved workspace shows as a change)."""
        matches = self.store.find_workspaces(self.workspace["name"])
        exact = [w for w in matches if w.subscription_id == self.workspace["subscription_id"]
                 and w.resource_group == self.workspace["resource_group"]]
        if exact:
            return exact[0]
        return matches[0] if len(matches) == 1 else None

    def _require_workspace(self) -> WorkspaceRow:
        ws = self._workspace()
        if ws is None:
            raise ProviderError(f"workspace {self.workspace['name']!r} does not exist yet; "
                                "apply the workspace first")
        return ws

    def workspace_dir(self, ws: WorkspaceRow | None = None) -> Path:
        """Folder holding the workspace's datastores and runs."""
        ws = ws or self._require_workspace()
        return self.home / "workspaces" / f"{ws.name}-{ws.id}"

    def datastore_dir(self, name: str, ws: WorkspaceRow | None = None) -> Path:
        """The folder that is a datastore."""
        return self.workspace_dir(ws) / "datastores" / name

    # reading ---------------------------------------------------------------------------------

    def read_all(self) -> dict[str, LiveObject]:
        ws = self._workspace()
        if ws is None:
            return {}
        out = {"workspace": LiveObject("workspace", {
            "name": ws.name, "subscription_id": ws.subscription_id,
            "resource_group": ws.resource_group, "location": ws.location, "tags": ws.tags,
        }, ws.owner)}
        for obj in self.store.list_objects(ws.id):
            out[f"{obj.kind}.{obj.name}"] = LiveObject(f"{obj.kind}.{obj.name}", obj.attrs,
                                                       obj.owner)
        return out

    def updatable_fields(self, kind: str) -> frozenset[str]:
        return UPDATABLE.get(kind, frozenset())

    # writing ---------------------------------------------------------------------------------

    def create(self, address: str, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        kind, _, name = address.partition(".")
        if kind == "workspace":
            ws = self.store.create_workspace(
                attrs["subscription_id"], attrs["resource_group"], attrs["name"],
                attrs["location"], attrs.get("tags") or {}, self.stack,
                built_in={"datastore": {DEFAULT_DATASTORE: {"type": "workspace_default"}}})
            self.datastore_dir(DEFAULT_DATASTORE, ws).mkdir(parents=True, exist_ok=True)
            (self.workspace_dir(ws) / "runs").mkdir(exist_ok=True)
            return
        ws = self._require_workspace()
        existing = self.store.get_object(ws.id, kind, name)
        if existing is not None and existing.owner not in (None, self.stack):
            raise ProviderError(f"{address} belongs to stack {existing.owner!r}")
        if kind == "datastore":
            self.datastore_dir(name, ws).mkdir(parents=True, exist_ok=True)
        self.store.put_object(ws.id, kind, name, self._stored(kind, attrs), self.stack)

    def update(self, address: str, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        kind, _, name = address.partition(".")
        refused = set(changed) - self.updatable_fields(kind)
        if refused:
            raise ProviderError(f"{address}: {', '.join(sorted(refused))} cannot change in "
                                "place")
        ws = self._require_workspace()
        if kind == "workspace":
            self.store.update_workspace(ws.id, attrs.get("tags") or {}, ws.owner)
            return
        current = self.store.get_object(ws.id, kind, name)
        if current is None:
            raise ProviderError(f"{address} does not exist")
        merged = dict(current.attrs)
        merged.update({k: v for k, v in self._stored(kind, attrs).items() if k in changed
                       or kind == "upload"})
        self.store.put_object(ws.id, kind, name, merged, current.owner)

    def delete(self, address: str, *, include_data: bool = False) -> None:
        kind, _, name = address.partition(".")
        ws = self._workspace()
        if ws is None:
            return
        if kind == "workspace":
            folder = self.workspace_dir(ws)
            # Datastore folders hold the data: kept unless asked, as deleting an Azure ML
            # workspace keeps its storage account.
            doomed = [folder] if include_data else [
                child for child in (folder.iterdir() if folder.is_dir() else ())
                if child.name != "datastores"]
            for path in doomed:
                shutil.rmtree(path, ignore_errors=True)
            self.store.delete_workspace(ws.id)
            return
        current = self.store.get_object(ws.id, kind, name)
        if current is None:
            return
        if kind == "upload" and include_data:
            store = self.file_store(current.attrs["datastore"], current.attrs["target_path"])
            for relpath in store.list_files():
                store.delete_file(relpath)
        if kind == "compute":
            for run in self.store.list_runs(ws.id):
                if run.compute == name and run.status not in ("Completed", "Failed",
                                                               "Canceled"):
                    self.cancel_run(run.id)
        self.store.delete_object(ws.id, kind, name)

    def adopt(self, address: str) -> LiveObject:
        kind, _, name = address.partition(".")
        ws = self._require_workspace()
        if kind == "workspace":
            if ws.owner not in (None, self.stack):
                raise UsageError(f"workspace belongs to stack {ws.owner!r}")
            self.store.update_workspace(ws.id, ws.tags, self.stack)
            return self.read_all()["workspace"]
        current = self.store.get_object(ws.id, kind, name)
        if current is None:
            raise UsageError(f"{address} does not exist in workspace {ws.name!r}")
        if current.owner not in (None, self.stack):
            raise UsageError(f"{address} belongs to stack {current.owner!r}")
        self.store.put_object(ws.id, kind, name, current.attrs, self.stack)
        return LiveObject(address, current.attrs, self.stack)

    @staticmethod
    def _stored(kind: str, attrs: dict[str, Any]) -> dict[str, Any]:
        """What the backend keeps: attrs already hold secret fingerprints, never values."""
        if kind == "upload":
            return {k: attrs[k] for k in _UPLOAD_RECORD}
        return dict(attrs)

    # testing aid -----------------------------------------------------------------------------

    def edit(self, address: str, changes: dict[str, Any], *, create: bool = False) -> None:
        """Change live state behind amlctl's back (drift tests and demos).

        With `create`, make a new object that no stack owns.
        """
        kind, _, name = address.partition(".")
        ws = self._require_workspace()
        if kind == "workspace":
            tags = changes.get("tags", ws.tags)
            self.store.update_workspace(ws.id, tags, ws.owner)
            return
        current = self.store.get_object(ws.id, kind, name)
        if current is None and not create:
            raise UsageError(f"{address} does not exist (use --create to make an unowned one)")
        if current is not None and create:
            raise UsageError(f"{address} already exists")
        attrs = dict(current.attrs) if current else dict(_SERVICE_DEFAULTS.get(kind, {}))
        attrs.update(changes)
        if kind == "datastore" and create:
            self.datastore_dir(name, ws).mkdir(parents=True, exist_ok=True)
        self.store.put_object(ws.id, kind, name, attrs, current.owner if current else None)

    # uploads ---------------------------------------------------------------------------------

    def file_store(self, datastore: str, target_path: str) -> FileStore:
        from amlctl.uploads import FolderFileStore

        ws = self._workspace()
        if ws is None:  # nothing uploaded yet: an empty listing under a not-yet-made folder
            folder = self.home / "workspaces" / "_none" / datastore
        else:
            folder = self.datastore_dir(datastore, ws)
        # within: the datastore folder is shared with runs, so nothing below it is trusted.
        return FolderFileStore(folder / target_path, self.home / "blobs.db", within=folder)

    # runs ------------------------------------------------------------------------------------

    def list_runs(self, experiment: str | None = None, spec_hash: str | None = None,
                  name: str | None = None) -> list[RunInfo]:
        from amlctl.providers.local.runs.submit import reconcile

        ws = self._workspace()
        if ws is None:
            return []
        rows = self.store.list_runs(ws.id, experiment, spec_hash, name)
        # Every read checks that an active run's supervisor is alive (see reconcile).
        return [_run_info(reconcile(self.store, r)) for r in rows]

    def get_run(self, run_id: str) -> RunInfo | None:
        from amlctl.providers.local.runs.submit import reconcile

        row = self.store.get_run(run_id)
        return _run_info(reconcile(self.store, row)) if row else None

    def submit_run(self, request: RunRequest) -> RunInfo:
        from amlctl.providers.local.runs.spec import build_spec
        from amlctl.providers.local.runs.submit import submit

        ws = self._require_workspace()
        datastores = {DEFAULT_DATASTORE: self.datastore_dir(DEFAULT_DATASTORE, ws)}
        for obj in self.store.list_objects(ws.id, "datastore"):
            datastores[obj.name] = self.datastore_dir(obj.name, ws)
        spec = build_spec(request.name, request.run, workspace=ws,
                          max_nodes=request.compute_max_nodes, datastore_dirs=datastores,
                          secrets=request.secrets)
        row = submit(self.store, ws, self.workspace_dir(ws), spec, request.source_dir,
                     spec_hash=request.spec_hash, owner=self.stack)
        return _run_info(row)

    def cancel_run(self, run_id: str) -> RunInfo:
        from amlctl.providers.local.runs.submit import cancel

        if self.store.get_run(run_id) is None:
            raise UsageError(f"no run {run_id!r}")
        return _run_info(cancel(self.store, run_id))

    def run_logs(self, run_id: str, role: str | None = None, follow: bool = False
                 ) -> Iterator[str]:
        from amlctl.providers.local.runs.logs import run_logs

        if self.store.get_run(run_id) is None:
            raise UsageError(f"no run {run_id!r}")
        return run_logs(self.store, run_id, role=role, follow=follow)

    def run_metrics(self, run_id: str) -> list[MetricSeries]:
        from amlctl.metrics.filestore import StoreReader, store_dir

        row = self.store.get_run(run_id)
        if row is None:
            raise UsageError(f"no run {run_id!r}")
        if self._metric_reader is None:  # kept: a live view reads only what was appended
            self._metric_reader = StoreReader()
        found = self._metric_reader.read(store_dir(Path(row.run_dir)), run_id)
        return [MetricSeries(key, tuple(p.step for p in points),
                             tuple(p.value for p in points))
                for key, points in found.items()]

    def run_roles(self, run_id: str) -> list[RoleStatus]:
        from amlctl.providers.local.runs.roles import role_states

        row = self.store.get_run(run_id)
        if row is None:
            raise UsageError(f"no run {run_id!r}")
        return role_states(row)

    def recover(self) -> list[str]:
        ws = self._workspace()
        if ws is None:
            return []
        repaired = []
        for run in self.store.list_runs(ws.id):
            if run.status in ("NotStarted", "Queued", "Preparing", "Running", "Canceling"):
                from amlctl.providers.local.runs.submit import ensure_supervised

                after = ensure_supervised(self.store, run.id)
                if (after.status, after.supervisor_pid) != (run.status, run.supervisor_pid):
                    repaired.append(f"run {run.id}: {run.status} -> {after.status}"
                                    + (f" ({after.error})" if after.error else ""))
        return repaired

    # status ----------------------------------------------------------------------------------

    def compute_status(self, name: str) -> ComputeStatus:
        ws = self._require_workspace()
        obj = self.store.get_object(ws.id, "compute", name)
        if obj is None:
            raise UsageError(f"no compute {name!r} in workspace {ws.name!r}")
        state = pool.status(self.store, ws.id, name, obj.attrs.get("min_nodes", 0),
                            obj.attrs.get("idle_seconds_before_scaledown", 1800))
        return ComputeStatus(
            provisioning_state="Succeeded", allocation_state=state.allocation_state.capitalize(),
            current_nodes=state.current_node_count, target_nodes=state.target_node_count,
            nodes=dict(state.node_state_counts), min_nodes=obj.attrs.get("min_nodes"),
            max_nodes=obj.attrs.get("max_nodes"), vm_size=obj.attrs.get("vm_size"),
            vm_priority=obj.attrs.get("vm_priority"))


def _run_info(row: RunRow) -> RunInfo:
    return RunInfo(
        id=row.id, name=row.name, experiment=row.experiment, spec_hash=row.spec_hash,
        status=row.status, compute=row.compute, created_at=row.created_at,
        started_at=row.started_at, ended_at=row.ended_at, error=row.error,
        extra={"run_dir": row.run_dir},
    )
