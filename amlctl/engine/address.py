"""Resource addresses: `workspace`, `compute.nc6`, `run.tf-mnist`."""

from __future__ import annotations

from amlctl.errors import UsageError
from amlctl.providers.base import KINDS

SECTION_OF_KIND = {
    "compute": "computes", "datastore": "datastores", "upload": "uploads",
    "experiment": "experiments", "run": "runs",
}


def make(kind: str, name: str | None = None) -> str:
    """The address of a resource."""
    return kind if kind == "workspace" else f"{kind}.{name}"


def split(address: str) -> tuple[str, str]:
    """(kind, name) of an address; the workspace's name is ''."""
    kind, _, name = address.partition(".")
    if kind not in KINDS or (kind != "workspace" and not name) or (kind == "workspace" and name):
        raise UsageError(
            f"{address!r} is not a resource address (expected workspace, compute.NAME, "
            "datastore.NAME, upload.NAME, experiment.NAME or run.NAME)"
        )
    return kind, name


def kind_of(address: str) -> str:
    """The kind part of an address."""
    return address.partition(".")[0]


def sort_key(address: str) -> tuple[int, str]:
    """Dependency order of kinds, then name: a stable order for output."""
    return (KINDS.index(kind_of(address)), address)
