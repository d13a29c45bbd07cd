"""Consistency and spot checks of the shipped Azure VM size catalogue, amlctl/manifest/vmsizes.json.

The figures were copied by hand from Microsoft's size pages, so these tests guard the shape the
loader relies on, the references between entries, and a sample of known figures.
"""

from __future__ import annotations

import json
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

CATALOGUE = Path(__file__).resolve().parents[2] / "amlctl" / "manifest" / "vmsizes.json"

SERIES_KEYS = {"gpu", "retired", "successor"}
SERIES_OPTIONAL = {"retires"}
SIZE_KEYS = {"series", "vcpus", "memory_gib", "gpus"}
SIZE_OPTIONAL = {"successor"}


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # json.load silently keeps the last of two equal keys; a catalogue must not have any.
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    assert not dupes, f"duplicate keys: {dupes}"
    return dict(pairs)


@pytest.fixture(scope="module")
def catalogue() -> dict[str, Any]:
    """The catalogue as parsed JSON."""
    return json.loads(CATALOGUE.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicates)


@pytest.fixture(scope="module")
def series(catalogue: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return catalogue["series"]


@pytest.fixture(scope="module")
def sizes(catalogue: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return catalogue["sizes"]


@pytest.fixture(scope="module")
def checked_on(catalogue: dict[str, Any]) -> date:
    """The date the catalogue says its retirement status was checked."""
    found = re.search(r"checked (\d{4}-\d{2}-\d{2})", catalogue["_comment"])
    assert found, "_comment must say when the retirement status was checked"
    return date.fromisoformat(found.group(1))


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _names(successor: str) -> list[str]:
    return [part.strip() for part in successor.split(" / ")]


def _retiring(info: dict[str, Any]) -> bool:
    return info["retired"] is not None or info.get("retires") is not None


def test_top_level_shape(catalogue: dict[str, Any]) -> None:
    assert set(catalogue) == {"_comment", "series", "sizes"}
    assert isinstance(catalogue["_comment"], str) and catalogue["_comment"]
    assert len(catalogue["series"]) >= 25
    assert len(catalogue["sizes"]) >= 150


def test_series_entries_have_the_expected_fields(series: dict[str, dict[str, Any]]) -> None:
    for name, info in series.items():
        assert SERIES_KEYS <= set(info) <= SERIES_KEYS | SERIES_OPTIONAL, name
        assert info["gpu"] is None or (isinstance(info["gpu"], str) and info["gpu"]), name
        for field in ("retired", "retires"):
            if info.get(field) is not None:
                date.fromisoformat(info[field])  # ISO dates only
        assert info.get("retires", "") is not None, f"{name}: omit 'retires' rather than null"
        assert not (info["retired"] and info.get("retires")), f"{name}: retired or retires"


def test_retirement_dates_sit_either_side_of_the_check_date(
    series: dict[str, dict[str, Any]], checked_on: date
) -> None:
    for name, info in series.items():
        if info["retired"]:
            assert date.fromisoformat(info["retired"]) <= checked_on, name
        if info.get("retires"):
            assert date.fromisoformat(info["retires"]) > checked_on, name


def test_size_entries_have_the_expected_fields(sizes: dict[str, dict[str, Any]]) -> None:
    for name, info in sizes.items():
        assert name.startswith("Standard_"), name
        assert SIZE_KEYS <= set(info) <= SIZE_KEYS | SIZE_OPTIONAL, name
        assert _is_int(info["vcpus"]) and info["vcpus"] > 0, name
        assert _is_int(info["gpus"]) and info["gpus"] >= 0, name
        memory = info["memory_gib"]
        assert isinstance(memory, int | float) and not isinstance(memory, bool), name
        assert memory > 0, name
        # Whole figures are stored as integers; only true fractions (3.5 GiB) are floats.
        assert _is_int(memory) or not float(memory).is_integer(), name


def test_size_names_are_unique_ignoring_case(sizes: dict[str, dict[str, Any]]) -> None:
    # The loader looks sizes up case-insensitively (manifests say STANDARD_NC6).
    lowered = [name.lower() for name in sizes]
    assert len(lowered) == len(set(lowered))


def test_every_size_belongs_to_a_known_series(
    series: dict[str, dict[str, Any]], sizes: dict[str, dict[str, Any]]
) -> None:
    for name, info in sizes.items():
        assert info["series"] in series, f"{name}: unknown series {info['series']!r}"


def test_every_series_has_sizes(
    series: dict[str, dict[str, Any]], sizes: dict[str, dict[str, Any]]
) -> None:
    used = {info["series"] for info in sizes.values()}
    assert set(series) == used


def test_gpu_counts_agree_with_the_series(
    series: dict[str, dict[str, Any]], sizes: dict[str, dict[str, Any]]
) -> None:
    for name, info in sizes.items():
        if series[info["series"]]["gpu"] is None:
            assert info["gpus"] == 0, name
        else:
            assert info["gpus"] >= 1, name


def test_retired_and_retiring_series_name_a_successor(series: dict[str, dict[str, Any]]) -> None:
    for name, info in series.items():
        if _retiring(info):
            assert isinstance(info["successor"], str) and info["successor"], name
        else:
            assert info["successor"] is None, name


def test_series_successors_exist_and_are_current(
    series: dict[str, dict[str, Any]], sizes: dict[str, dict[str, Any]]
) -> None:
    for name, info in series.items():
        if not info["successor"]:
            continue
        for target in _names(info["successor"]):
            if target in sizes:
                target_series = sizes[target]["series"]
            else:
                assert target in series, f"{name}: successor {target!r} is not in the catalogue"
                target_series = target
            assert not _retiring(series[target_series]), f"{name} -> {target} is retiring too"


def test_size_successors_exist_and_are_current(
    series: dict[str, dict[str, Any]], sizes: dict[str, dict[str, Any]]
) -> None:
    with_successor = {n: i for n, i in sizes.items() if "successor" in i}
    assert with_successor, "the retired GPU sizes map to concrete successors"
    for name, info in with_successor.items():
        assert series[info["series"]]["retired"], f"{name}: successor on a size still offered"
        target = info["successor"]
        assert target in sizes, f"{name}: successor {target!r} is not in the catalogue"
        assert not _retiring(series[sizes[target]["series"]]), f"{name} -> {target} is retiring"
        if info["gpus"]:
            assert sizes[target]["gpus"] >= 1, f"{name}: a GPU size must map to a GPU size"


@pytest.mark.parametrize(
    ("name", "series_name", "vcpus", "memory_gib", "gpus"),
    [
        ("Standard_NC6", "NC", 6, 56, 1),
        ("Standard_NC12", "NC", 12, 112, 2),
        ("Standard_NC24r", "NC", 24, 224, 4),
        ("Standard_NC6_Promo", "NC_Promo", 6, 56, 1),
        ("Standard_NC6s_v2", "NCv2", 6, 112, 1),
        ("Standard_NC24rs_v2", "NCv2", 24, 448, 4),
        ("Standard_NC6s_v3", "NCv3", 6, 112, 1),
        ("Standard_NC24s_v3", "NCv3", 24, 448, 4),
        ("Standard_NC4as_T4_v3", "NCasT4_v3", 4, 28, 1),
        ("Standard_NC16as_T4_v3", "NCasT4_v3", 16, 110, 1),
        ("Standard_NC64as_T4_v3", "NCasT4_v3", 64, 440, 4),
        ("Standard_NC24ads_A100_v4", "NC_A100_v4", 24, 220, 1),
        ("Standard_NC96ads_A100_v4", "NC_A100_v4", 96, 880, 4),
        ("Standard_NC40ads_H100_v5", "NCads_H100_v5", 40, 320, 1),
        ("Standard_ND6s", "ND", 6, 112, 1),
        ("Standard_ND24rs", "ND", 24, 448, 4),
        ("Standard_ND40rs_v2", "NDv2", 40, 672, 8),
        ("Standard_ND96asr_v4", "NDasrA100_v4", 96, 900, 8),
        ("Standard_ND96amsr_A100_v4", "NDm_A100_v4", 96, 1900, 8),
        ("Standard_NV6", "NV", 6, 56, 1),
        ("Standard_NV12s_v3", "NVv3", 12, 112, 1),
        ("Standard_NV36ads_A10_v5", "NVadsA10_v5", 36, 440, 1),
        ("Standard_D1", "D", 1, 3.5, 0),
        ("Standard_D2_v2", "Dv2", 2, 7, 0),
        ("Standard_D15_v2", "Dv2", 20, 140, 0),
        ("Standard_DS3_v2", "Dsv2", 4, 14, 0),
        ("Standard_D4s_v3", "Dsv3", 4, 16, 0),
        ("Standard_D8d_v4", "Ddv4", 8, 32, 0),
        ("Standard_D96_v5", "Dv5", 96, 384, 0),
        ("Standard_E64_v3", "Ev3", 64, 432, 0),
        ("Standard_E64_v4", "Ev4", 64, 504, 0),
        ("Standard_E96_v5", "Ev5", 96, 672, 0),
        ("Standard_F1", "F", 1, 2, 0),
        ("Standard_F72s_v2", "Fsv2", 72, 144, 0),
    ],
)
def test_known_figures(
    sizes: dict[str, dict[str, Any]],
    name: str,
    series_name: str,
    vcpus: int,
    memory_gib: float,
    gpus: int,
) -> None:
    info = sizes[name]
    assert (info["series"], info["vcpus"], info["memory_gib"], info["gpus"]) == (
        series_name,
        vcpus,
        memory_gib,
        gpus,
    )


@pytest.mark.parametrize(
    ("series_name", "retired"),
    [
        ("NC", "2023-09-06"),
        ("NC_Promo", "2023-09-06"),
        ("NCv2", "2023-09-06"),
        ("ND", "2023-09-06"),
        ("NV", "2023-09-06"),
        ("NCv3", "2025-09-30"),
        ("NVv3", "2026-09-30"),
        ("NCasT4_v3", None),
        ("NC_A100_v4", None),
        ("NDv2", None),
        ("Dv5", None),
    ],
)
def test_known_retirements(
    series: dict[str, dict[str, Any]], series_name: str, retired: str | None
) -> None:
    assert series[series_name]["retired"] == retired


@pytest.mark.parametrize(
    ("name", "successor"),
    [
        ("Standard_NC6", "Standard_NC4as_T4_v3"),
        ("Standard_NC12", "Standard_NC16as_T4_v3"),
        ("Standard_NC24", "Standard_NC64as_T4_v3"),
        ("Standard_NC6s_v2", "Standard_NC24ads_A100_v4"),
        ("Standard_NC24rs_v2", "Standard_NC96ads_A100_v4"),
        ("Standard_ND24rs", "Standard_ND96amsr_A100_v4"),
    ],
)
def test_known_size_successors(sizes: dict[str, dict[str, Any]], name: str, successor: str) -> None:
    assert sizes[name]["successor"] == successor
