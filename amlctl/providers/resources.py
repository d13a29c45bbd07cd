"""The kinds of resource amlctl manages and their addresses (`workspace`, `compute.nc6`).

Backend-neutral data shared by the engine (ordering, pruning, drift) and by providers (which
handle one kind per handler, see dispatch.py). A kind is declared once here; everything that
orders, prunes or parses addresses reads these records.
"""

from __future__ import annotations

from dataclasses import dataclass

from amlctl.errors import UsageError


@dataclass(frozen=True)
class Kind:
    """A kind of resource and how the engine treats it."""

    name: str
    order: int  # dependency order: creates and updates follow it, deletes go in reverse
    section: str | None  # the manifest's section; None for the workspace (one, unnamed)
    prunable: bool  # an owned object of this kind is deleted once it leaves the manifest
    drift: bool  # live attributes are compared with the last-applied record

    @property
    def singleton(self) -> bool:
        """True for the workspace: its address carries no name."""
        return self.section is None


KIND_LIST = (
    Kind("workspace", 0, None, prunable=False, drift=True),
    Kind("datastore", 1, "datastores", prunable=True, drift=True),
    Kind("compute", 2, "computes", prunable=True, drift=True),
    Kind("experiment", 3, "experiments", prunable=True, drift=True),
    # an upload's files and a run's submissions are compared by their own rules (sync plan,
    # spec hash), not against a last-applied record
    Kind("upload", 4, "uploads", prunable=True, drift=False),
    # a run that leaves the manifest is not cancelled by a plan's prune: runs outlive it
    Kind("run", 5, "runs", prunable=False, drift=False),
)
KIND_BY_NAME = {kind.name: kind for kind in KIND_LIST}
KINDS = tuple(KIND_BY_NAME)  # names, in dependency order
PRUNABLE = frozenset(k.name for k in KIND_LIST if k.prunable)


def kind(name: str) -> Kind:
    """The record of a kind by name (UsageError for an unknown one)."""
    found = KIND_BY_NAME.get(name)
    if found is None:
        raise UsageError(f"unknown kind {name!r}; expected one of {', '.join(KINDS)}")
    return found


@dataclass(frozen=True, order=True)
class Address:
    """A parsed resource address: its kind and name ('' for the workspace)."""

    kind: str
    name: str = ""

    @classmethod
    def parse(cls, text: str) -> Address:
        """`compute.nc6` -> Address('compute', 'nc6'); UsageError for anything else."""
        kind_name, _, name = text.partition(".")
        found = KIND_BY_NAME.get(kind_name)
        if found is None or found.singleton == bool(name):
            forms = [k.name if k.singleton else f"{k.name}.NAME" for k in KIND_LIST]
            raise UsageError(f"{text!r} is not a resource address (expected "
                             f"{', '.join(forms[:-1])} or {forms[-1]})")
        return cls(kind_name, name)

    def __str__(self) -> str:
        return self.kind if not self.name else f"{self.kind}.{self.name}"
