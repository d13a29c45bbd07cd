"""Every real Batch AI file converts, validates, and has every field accounted for."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from batchai_corpus import corpus_files, kind_of

from amlctl.convert import Conversion, Outcome, convert_batchai
from amlctl.convert.sources import load_source

FILES = corpus_files()
FALLBACK = "not understood by the converter"


def convert_one(path: Path) -> Conversion:
    if kind_of(path) == "cluster":
        return convert_batchai([path], [])
    return convert_batchai([], [path])


def test_the_whole_corpus_is_there() -> None:
    # 17 recipe jobs, 3 more jobs and clusters from the CLI tests and docs, 2 REST examples.
    assert len(FILES) == 25


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_file_converts_validates_and_reports_every_field(
    path: Path, validate: Callable[[Conversion], object]
) -> None:
    conversion = convert_one(path)

    loaded = validate(conversion)
    assert loaded is not None

    src = load_source(path, kind_of(path))  # type: ignore[arg-type]
    report = conversion.report
    markdown = report.to_markdown()
    text = report.to_text()
    for leaf in src.leaf_paths():
        assert report.covered(path.name, leaf), f"{leaf} is not in the report"
        # The rendered report names the field itself or the entry that covers it.
        covering = [e for e in report.for_source(path.name) if e.covers(leaf)]
        assert any(f"`{e.field}`" in markdown and e.field in text for e in covering)
    # The converter knows every field the real files use: none falls through to the catch-all.
    assert not [e for e in report.entries if FALLBACK in e.note]


def test_whole_corpus_in_one_manifest_validates(
    validate: Callable[[Conversion], object],
) -> None:
    clusters = [p for p in FILES if kind_of(p) == "cluster"]
    jobs = [p for p in FILES if kind_of(p) == "job"]
    conversion = convert_batchai(clusters, jobs, workspace="ml-ws", resource_group="ml-rg",
                                 location="eastus", subscription_id="sub-id")
    loaded = validate(conversion)
    manifest = loaded.manifest  # type: ignore[attr-defined]
    assert len(manifest.computes) == len(clusters)
    assert len(manifest.runs) == len(jobs)
    # Given on the command line: nothing left to do about the workspace.
    assert not [e for e in conversion.report.entries if e.field.startswith("--")]
    assert manifest.workspace.location == "eastus"


def test_every_unmapped_field_says_what_to_do() -> None:
    actions = [(path, entry) for path in FILES for entry in convert_one(path).report.entries
               if entry.outcome is Outcome.ACTION]
    assert len(actions) > 100  # the corpus has many fields to act on: the loop checks them
    for path, entry in actions:
        assert len(entry.note) > 20, f"{path.name} {entry.field}: no advice"
