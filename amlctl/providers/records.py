"""What a provider is handed to submit a run and what it reports about runs and clusters
(besides live objects): a run's request and compute, its metrics and roles, a cluster's status.

Import them from amlctl.providers.base, their public home. They are defined here, and loaded
on first use, so that a plan or apply that submits no run and shows no status does not build
these frozen classes on every start (each costs a few compiled methods).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from amlctl.providers.base import NODE_STATES

# RunDefinition is an annotation here only: a manifest without runs is planned without
# loading the run definitions.
if TYPE_CHECKING:
    from amlctl.runs.definition import RunDefinition


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
