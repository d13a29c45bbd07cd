"""The shipped catalogue of Azure VM sizes (vCPUs, memory, GPUs, retired series)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path


@dataclass(frozen=True)
class VmSize:
    """One Azure VM size as the catalogue knows it."""

    name: str
    series: str
    vcpus: int
    memory_gib: float
    gpus: int
    retired: str | None  # date the series was retired, if it was
    successor: str | None  # what to move to when retired


def _catalogue_text() -> str:
    # Beside this module in any install from a wheel or a source tree: a plain read, which is
    # far cheaper than importlib.resources (a tenth of a validate's time). Zipped installs
    # fall back to it.
    path = Path(__file__).with_name("vmsizes.json")
    if path.is_file():
        return path.read_text(encoding="utf-8")
    from importlib import resources

    return resources.files("amlctl.manifest").joinpath("vmsizes.json").read_text("utf-8")


@cache
def _catalogue() -> dict[str, VmSize]:
    raw = json.loads(_catalogue_text())
    series = raw.get("series", {})
    sizes: dict[str, VmSize] = {}
    for name, info in raw.get("sizes", {}).items():
        family = series.get(info["series"], {})
        sizes[name.lower()] = VmSize(
            name=name,
            series=info["series"],
            vcpus=int(info["vcpus"]),
            memory_gib=float(info["memory_gib"]),
            gpus=int(info.get("gpus", 0)),
            retired=family.get("retired"),
            successor=info.get("successor") or family.get("successor"),
        )
    return sizes


def lookup(vm_size: str) -> VmSize | None:
    """The catalogue entry for `vm_size` (case-insensitive), or None when unknown."""
    return _catalogue().get(vm_size.lower())


def closest(vm_size: str) -> str | None:
    """The catalogued size whose name is closest to `vm_size`, for a 'did you mean' hint."""
    import difflib

    catalogue = _catalogue()
    match = difflib.get_close_matches(vm_size.lower(), list(catalogue), n=1, cutoff=0.8)
    return catalogue[match[0]].name if match else None
