"""The plan as plain, immutable data: what would change, field by field, and why.

An Action's value is its symbol in the UI. A provider only says which fields it can update in
place; the differ (differ.py) decides the action. Rendering is separate (render/).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

FORMAT_VERSION = "1.0"


class Action(Enum):
    """What apply will do to one resource. The value is the symbol shown to users."""

    NOOP = " "
    CREATE = "+"
    UPDATE = "~"
    REPLACE = "-/+"
    DELETE = "-"

    @property
    def json_actions(self) -> list[str]:
        """Terraform-style action list for the JSON plan."""
        return {
            Action.NOOP: ["no-op"], Action.CREATE: ["create"], Action.UPDATE: ["update"],
            Action.REPLACE: ["delete", "create"], Action.DELETE: ["delete"],
        }[self]


@dataclass(frozen=True)
class FieldChange:
    """One attribute that differs between live and desired."""

    name: str
    before: Any
    after: Any
    forces_replacement: bool = False
    sensitive: bool = False


@dataclass(frozen=True)
class Change:
    """The planned change of one resource."""

    address: str
    kind: str
    name: str
    action: Action
    before: dict[str, Any] | None
    after: dict[str, Any] | None
    fields: tuple[FieldChange, ...] = ()
    reasons: tuple[str, ...] = ()  # for display only
    detail: dict[str, Any] = field(default_factory=dict)  # upload file diff, run info
    sensitive_fields: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Drift:
    """A resource changed outside amlctl since amlctl last applied it."""

    address: str
    fields: tuple[FieldChange, ...]


@dataclass(frozen=True)
class Plan:
    """Everything apply would do, in dependency order."""

    stack: str
    backend: str
    manifest: str
    changes: tuple[Change, ...]
    drift: tuple[Drift, ...] = ()
    live_fingerprint: str = ""  # of the live state the plan was made against
    desired_fingerprint: str = ""  # of the (secret-free) desired state
    destroy: bool = False
    include_data: bool = False
    # Dependencies between the plan's addresses, (first, then): for drawing only.
    edges: tuple[tuple[str, str], ...] = ()
    # Changes that need no action, e.g. a rotated run secret (used from the next submission):
    # shown, never counted as changes to apply.
    notes: tuple[str, ...] = ()
    # The file-level plan of each upload (address -> SyncPlan), as made with this plan:
    # what apply sends, as Terraform applies the plan shown. Not saved in a plan file
    # (applying one plans again), not compared.
    upload_plans: Any = field(default=None, compare=False, repr=False)

    @property
    def actionable(self) -> tuple[Change, ...]:
        """Changes that do something."""
        return tuple(c for c in self.changes if c.action is not Action.NOOP)

    @property
    def has_changes(self) -> bool:
        """True when apply would change something."""
        return bool(self.actionable)

    def counts(self) -> dict[str, int]:
        """add / change / destroy counts, as Terraform's summary line counts them."""
        add = change = destroy = 0
        for c in self.changes:
            if c.action is Action.CREATE:
                add += 1
            elif c.action is Action.UPDATE:
                change += 1
            elif c.action is Action.DELETE:
                destroy += 1
            elif c.action is Action.REPLACE:
                add += 1
                destroy += 1
        return {"add": add, "change": change, "destroy": destroy}

    @property
    def interrupted_runs(self) -> tuple[dict[str, Any], ...]:
        """Queued or running runs on clusters this plan replaces or deletes: apply cancels
        them or leaves them without their compute (see planner.mark_interrupted_runs)."""
        return tuple(run for c in self.changes for run in c.detail.get("interrupted_runs", ()))

    def get(self, address: str) -> Change | None:
        """The change of one address."""
        return next((c for c in self.changes if c.address == address), None)
