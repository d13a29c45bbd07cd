"""The local backend: a workspace on this machine (SQLite state, folders, real processes).

Same semantics as Azure ML where it matters to a plan: computes change min/max nodes, idle time
and tags in place and are replaced for anything else; datastores are folders; account keys are
never stored, only their fingerprint; every object carries its owner stack.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlctl.errors import ProviderError, UsageError
from amlctl.providers.base import (
    ComputeStatus,
    FileStore,
    MetricSeries,
    RoleStatus,
    RunInfo,
    RunRequest,
)
from amlctl.providers.dispatch import HandlerProvider, KindHandler
from amlctl.providers.local.handlers import DEFAULT_DATASTORE, handlers
from amlctl.providers.local.store import RunRow, Store, WorkspaceRow
from amlctl.providers.resources import Address

if TYPE_CHECKING:
    from amlctl.metrics.filestore import StoreReader

# What Azure ML fills in for a cluster made elsewhere (portal, CLI) when not given.
_SERVICE_DEFAULTS = {
    "compute": {"vm_priority": "dedicated", "min_nodes": 0,
                "idle_seconds_before_scaledown": 1800, "vnet": None, "tags": {}},
    "experiment": {"tags": {}},
}


class LocalProvider(HandlerProvider):
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

    def find_workspace(self) -> WorkspaceRow | None:
        """The manifest's workspace, found by name (so a moved workspace shows as a change)."""
        matches = self.store.find_workspaces(self.workspace["name"])
        exact = [w for w in matches if w.subscription_id == self.workspace["subscription_id"]
                 and w.resource_group == self.workspace["resource_group"]]
        if exact:
            return exact[0]
        return matches[0] if len(matches) == 1 else None

    def require_workspace(self) -> WorkspaceRow:
        """The manifest's workspace; ProviderError while it does not exist."""
        ws = self.find_workspace()
        if ws is None:
            raise ProviderError(f"workspace {self.workspace['name']!r} does not exist yet; "
                                "apply the workspace first")
        return ws

    def workspace_dir(self, ws: WorkspaceRow | None = None) -> Path:
        """Folder holding the workspace's datastores and runs."""
        ws = ws or self.require_workspace()
        return self.home / "workspaces" / f"{ws.name}-{ws.id}"

    def datastore_dir(self, name: str, ws: WorkspaceRow | None = None) -> Path:
        """The folder that is a datastore."""
        return self.workspace_dir(ws) / "datastores" / name

    # objects: one handler per kind (handlers.py) ---------------------------------------------

    def make_handlers(self) -> dict[str, KindHandler]:
        return dict(handlers(self))

    def workspace_exists(self) -> bool:
        return self.find_workspace() is not None

    # testing aid -----------------------------------------------------------------------------

    def edit(self, address: str, changes: dict[str, Any], *, create: bool = False) -> None:
        """Change live state behind amlctl's back (drift tests and demos).

        With `create`, make a new object that no stack owns.
        """
        where = Address.parse(address)
        kind, name = where.kind, where.name
        ws = self.require_workspace()
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

        ws = self.find_workspace()
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

        ws = self.find_workspace()
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

        ws = self.require_workspace()
        datastores = {DEFAULT_DATASTORE: self.datastore_dir(DEFAULT_DATASTORE, ws)}
        for obj in self.store.list_objects(ws.id, "datastore"):
            datastores[obj.name] = self.datastore_dir(obj.name, ws)
        spec = build_spec(request.name, request.run, workspace=ws,
                          max_nodes=request.compute.max_nodes, datastore_dirs=datastores,
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
        ws = self.find_workspace()
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
        ws = self.require_workspace()
        obj = self.store.get_object(ws.id, "compute", name)
        if obj is None:
            raise UsageError(f"no compute {name!r} in workspace {ws.name!r}")
        from amlctl.providers.local import pool  # node pools matter to status and runs only

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
