"""The provider interface: everything the engine may ask of a backend, and nothing more.

The engine speaks in addresses (`compute.nc6`) and attribute dicts in the manifest's own
vocabulary. A provider normalises what it reads (enum case, subnet ids, durations) into that
vocabulary, never returns a secret (only a fingerprint, or None when the service cannot tell),
and says which fields it can change in place; the engine decides the action from that.
"""

from __future__ import annotations

import hashlib
import hmac
import math
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from amlctl.providers import resources

# RunDefinition is an annotation here only: a manifest without runs is planned without
# loading the run definitions.
if TYPE_CHECKING:
    from amlctl.engine.state import StateStore
    from amlctl.runs.definition import RunDefinition

OWNER_TAG = "amlctl.stack"
SPEC_HASH_TAG = "amlctl.spec_hash"

KINDS = resources.KINDS  # kind names in dependency order (see resources.KIND_LIST)
TERMINAL_RUN_STATES = frozenset({"Completed", "Failed", "Canceled"})


def fingerprint(secret: str, key: bytes | None = None) -> str:
    """A stable, non-reversible stand-in for a secret, so a changed key shows as a change.

    With `key` (the stack's random fingerprint key, kept in its state) it is an HMAC, so a
    fingerprint in shared state cannot be checked against guessed secrets without the key.
    """
    if key is not None:
        return "sha256:" + hmac.new(key, secret.encode(), hashlib.sha256).hexdigest()[:16]
    return "sha256:" + hashlib.sha256(b"amlctl:" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LiveObject:
    """An object as it exists in the workspace, normalised to manifest vocabulary."""

    address: str
    attrs: dict[str, Any]
    owner: str | None  # the amlctl.stack tag, None when amlctl did not create it


@dataclass(frozen=True)
class RunInfo:
    """A submitted run, as `amlctl runs` and the plan see it."""

    id: str
    name: str  # the manifest's run name
    experiment: str
    spec_hash: str
    status: str
    compute: str
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def active(self) -> bool:
        """True while the run may still change (not Completed, Failed or Canceled)."""
        return self.status not in TERMINAL_RUN_STATES


@dataclass(frozen=True)
class MetricSeries:
    """One metric of a run: its values in step order (NaN and infinities kept as logged)."""

    name: str
    steps: tuple[int, ...]
    values: tuple[float, ...]

    @property
    def last(self) -> float:
        """The value at the highest step (the latest logged)."""
        return self.values[-1]

    @property
    def minimum(self) -> float:
        """The smallest finite value (NaN when there is none)."""
        finite = [v for v in self.values if math.isfinite(v)]
        return min(finite) if finite else math.nan

    @property
    def maximum(self) -> float:
        """The largest finite value (NaN when there is none)."""
        finite = [v for v in self.values if math.isfinite(v)]
        return max(finite) if finite else math.nan

    def summary(self) -> dict[str, Any]:
        """last / min / max / steps and the points, JSON-ready (NaN as null)."""
        def num(value: float) -> float | None:
            return value if math.isfinite(value) else None

        return {"last": num(self.last), "min": num(self.minimum), "max": num(self.maximum),
                "steps": len(self.steps), "first_step": self.steps[0],
                "last_step": self.steps[-1],
                "points": [[s, num(v)] for s, v in zip(self.steps, self.values, strict=True)]}


@dataclass(frozen=True)
class RoleStatus:
    """One process (role) of a run as a live view shows it."""

    name: str  # worker:0, ps:0; `run` when a backend cannot tell roles apart
    state: str  # Queued, Running, Completed, Failed, Canceled
    last_line: str | None = None  # the latest line of its log
    exit_code: int | None = None


# The node states AmlCompute counts a cluster's nodes in; every backend reports all six.
NODE_STATES = ("idle", "running", "preparing", "leaving", "preempted", "unusable")


@dataclass(frozen=True)
class ComputeStatus:
    """A cluster's live state, the same shape on every backend (`amlctl status` renders it;
    `status --json` prints `to_json()`, documented in docs/status-json.md).

    Node counts are None while the service cannot tell yet (a cluster still provisioning).
    """

    provisioning_state: str  # Succeeded, Creating, Failed, ... ("Unknown" when not reported)
    allocation_state: str | None  # Steady or Resizing
    current_nodes: int | None
    target_nodes: int | None
    nodes: dict[str, int]  # node state (NODE_STATES) -> count; empty while provisioning
    min_nodes: int | None
    max_nodes: int | None
    errors: tuple[str, ...] = ()  # one line per error the service reports
    vm_size: str | None = None
    vm_priority: str | None = None  # dedicated | lowpriority

    @property
    def provisioned(self) -> bool:
        """Whether node counts are known (they are not while a cluster is being created)."""
        return self.current_nodes is not None

    def to_json(self) -> dict[str, Any]:
        """The stable `status --json` shape: snake_case keys, every node state present."""
        return {
            "provisioning_state": self.provisioning_state,
            "allocation_state": self.allocation_state,
            "current_nodes": self.current_nodes,
            "target_nodes": self.target_nodes,
            "nodes": {state: self.nodes.get(state, 0) for state in NODE_STATES}
            if self.provisioned else {},
            "min_nodes": self.min_nodes,
            "max_nodes": self.max_nodes,
            "errors": list(self.errors),
            "vm_size": self.vm_size,
            "vm_priority": self.vm_priority,
        }


@dataclass(frozen=True)
class ComputeRef:
    """The compute a run is submitted to, as the manifest declares it."""

    name: str
    vm_size: str | None = None
    vm_priority: str | None = None  # dedicated | lowpriority
    min_nodes: int = 0
    max_nodes: int = 1


@dataclass(frozen=True)
class RunRequest:
    """What the engine hands a provider to submit a run."""

    name: str  # the manifest's run name
    spec_hash: str
    run: RunDefinition
    source_dir: Path
    compute: ComputeRef
    secrets: dict[str, str] = field(default_factory=dict, repr=False)  # env var -> value
    supersedes: str | None = None  # the run an explicit resubmission (--replace) replaces


class FileStore(Protocol):
    """A folder of a datastore that uploads sync into (see amlctl.uploads)."""

    def list_files(self) -> dict[str, Any]: ...
    def put_file(self, src: Path, relpath: str) -> Any: ...
    def delete_file(self, relpath: str) -> None: ...


class Provider(ABC):
    """A backend. One instance serves one workspace of one stack."""

    name: str = ""

    def __init__(self, workspace: dict[str, Any], stack: str, state_dir: Path) -> None:
        self.workspace = workspace  # the manifest's workspace attributes
        self.stack = stack
        self.state_dir = state_dir  # local folder for caches (and the local state store)
        # The key of secret fingerprints, from the stack's state (see `state_store`).
        self.fingerprint_key: bytes | None = None
        # The manifest's `state:` block, for backends that keep state remotely.
        self.state_config: dict[str, Any] | None = None

    def state_store(self) -> StateStore:
        """Where this backend keeps the stack's state (identity, applied record, journal,
        lock). Default: SQLite and a kernel lock in the local state folder."""
        from amlctl.engine.history import SqliteState

        return SqliteState(self.state_dir, self.stack)

    # objects ---------------------------------------------------------------------------------

    @abstractmethod
    def read_all(self) -> dict[str, LiveObject]:
        """Every object of the workspace by address, owned or not (workspace included)."""

    @abstractmethod
    def create(self, address: str, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        """Create the object (owner tag set). Idempotent: an existing one is updated."""

    @abstractmethod
    def update(self, address: str, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        """Change `changed` fields in place (only fields in `updatable_fields`)."""

    @abstractmethod
    def delete(self, address: str, *, include_data: bool = False) -> None:
        """Delete the object; waits until it is really gone. No error if already gone."""

    @abstractmethod
    def updatable_fields(self, kind: str) -> frozenset[str]:
        """Fields of `kind` this backend changes in place; any other change replaces."""

    @abstractmethod
    def adopt(self, address: str) -> LiveObject:
        """Tag an existing, unowned object as this stack's (`amlctl import`)."""

    # uploads ---------------------------------------------------------------------------------

    @abstractmethod
    def file_store(self, datastore: str, target_path: str) -> FileStore:
        """The remote folder an upload syncs to."""

    # runs ------------------------------------------------------------------------------------

    @abstractmethod
    def list_runs(self, experiment: str | None = None, spec_hash: str | None = None,
                  name: str | None = None) -> list[RunInfo]:
        """Runs of the workspace, newest first."""

    @abstractmethod
    def submit_run(self, request: RunRequest) -> RunInfo:
        """Submit a run; it keeps going after the CLI exits."""

    @abstractmethod
    def cancel_run(self, run_id: str) -> RunInfo:
        """Cancel a run (no-op when it already ended)."""

    @abstractmethod
    def get_run(self, run_id: str) -> RunInfo | None:
        """A run by id."""

    @abstractmethod
    def run_logs(self, run_id: str, role: str | None = None, follow: bool = False
                 ) -> Iterator[str]:
        """Log lines of a run, prefixed by role when several processes write."""

    def run_metrics(self, run_id: str) -> list[MetricSeries]:
        """Every metric the run logged, by name; [] when it logged none (or the backend
        cannot read them)."""
        return []

    def run_roles(self, run_id: str) -> list[RoleStatus]:
        """Each process of the run with its state; by default the run as one role."""
        run = self.get_run(run_id)
        if run is None:
            return []
        state = "Queued" if run.status in ("NotStarted", "Queued", "Preparing") else \
            "Running" if run.status == "Canceling" else run.status
        return [RoleStatus("run", state)]

    def preflight(self, address: str, attrs: dict[str, Any]) -> list[str]:
        """Problems the service would only report while applying a create (size offered in
        the region, quota), so a plan can fail early instead of halfway through a replace."""
        return []

    def use_credentials(self, datastores: dict[str, dict[str, str]]) -> None:
        """The manifest's secrets per datastore name (account_key / sas_token), given before
        planning: a backend that reads a datastore's files may use them instead of the ones
        registered, so a rotated key is fixed by the manifest alone."""
        return None

    def create_notes(self, address: str, attrs: dict[str, Any]) -> list[str]:
        """What the plan should say about creating `address` beyond the attributes (e.g. that
        a workspace name matches none of the workspaces its resource group has)."""
        return []

    def recover(self) -> list[str]:
        """Repair what an interrupted apply left half-done; returns what was repaired."""
        return []

    # status ----------------------------------------------------------------------------------

    @abstractmethod
    def compute_status(self, name: str) -> ComputeStatus:
        """A cluster's live state: nodes by state, allocation, scale bounds, errors."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""
