"""Resource addresses: `workspace`, `compute.nc6`, `run.tf-mnist` (see providers/resources.py,
where kinds and the typed Address are declared)."""

from __future__ import annotations

from amlctl.providers.resources import KIND_BY_NAME, KINDS, Address

__all__ = ["KINDS", "Address", "kind_of", "make", "sort_key", "split"]


def make(kind: str, name: str | None = None) -> str:
    """The address of a resource."""
    return kind if KIND_BY_NAME[kind].singleton else f"{kind}.{name}"


def split(address: str) -> tuple[str, str]:
    """(kind, name) of an address; the workspace's name is ''. UsageError when malformed."""
    parsed = Address.parse(address)
    return parsed.kind, parsed.name


def kind_of(address: str) -> str:
    """The kind part of an address."""
    return address.partition(".")[0]


def sort_key(address: str) -> tuple[int, str]:
    """Dependency order of kinds, then name: a stable order for output."""
    return (KIND_BY_NAME[kind_of(address)].order, address)
