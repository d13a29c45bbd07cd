"""Fixtures for the Batch AI converter tests: the input corpus and manifest validation."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from amlctl.convert import Conversion


@pytest.fixture
def validate(tmp_path: Path) -> Callable[[Conversion], object]:
    """Write a conversion's manifest where its runs' folders exist, then load and check it.

    The converted runs point at folders a user copies in (source_directory, entry_script);
    they are created empty here, as the report tells the user to do.
    """
    from amlctl.manifest import load_manifest

    def check(conversion: Conversion) -> object:
        folder = tmp_path / "stack"
        folder.mkdir(exist_ok=True)
        text = conversion.to_yaml()
        manifest = folder / "amlctl.yaml"
        manifest.write_text(text)
        data = YAML(typ="safe").load(text)
        for run in (data.get("runs") or {}).values():
            source = folder / run["source_directory"]
            source.mkdir(parents=True, exist_ok=True)
            if run.get("entry_script"):
                (source / run["entry_script"]).write_text("")
        return load_manifest(manifest, allow_missing_secrets=True)

    return check
