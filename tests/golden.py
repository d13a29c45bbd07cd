"""Golden files: output compared with a checked-in file, or rewritten from it on request.

`pytest --update-golden` (registered in tests/conftest.py) rewrites every golden file the
selected tests compare, in both suites that have them (tests/convert/golden/ and the scenario
folders of tests/engine/scenarios/); review `git diff` before committing the result.
"""

from __future__ import annotations

from pathlib import Path

OPTION = "--update-golden"


def check_golden(path: Path, actual: str, update: bool, context: str = "") -> None:
    """Assert `actual` equals the file at `path`; with `update`, write it there first."""
    if update:
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"{path.name} missing: run pytest {OPTION} to create it"
    expected = path.read_text(encoding="utf-8")
    assert actual == expected, (
        f"{path.name} differs; if the change is intended, regenerate with pytest {OPTION} "
        f"and review the diff{context}")
