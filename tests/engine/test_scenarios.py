"""Scenario tests: each folder of `scenarios/` is a story told in `story.yaml`.

A story starts with the folder's `files/` copied into an empty manifest folder and `v1.yaml`
as its `amlctl.yaml` (state in `.amlctl/` beside it), then runs its steps in order:

    - amlctl: plan --json         # one amlctl command line, run in-process
      exit: 2                     # expected exit code (default 0)
      golden: plan.json           # stdout must equal this file of the scenario folder
      out: [text, ...]            # substrings stdout must contain
      err: [text, ...]            # substrings stderr must contain
      lacks: [text, ...]          # substrings neither may contain
    - manifest: v2.yaml           # the manifest becomes this version
    - env: {NAME: value}          # environment for the rest of the story
    - write: {data/a.txt: text}   # change local files
    - remove: [data/b.txt]
    - exists: [glob, ...]         # paths (globs) that must exist, relative to the folder
    - missing: [glob, ...]        # ... and must not
    - sql: {db: .amlctl/state.db, query: "SELECT ...", rows: [[...], ...]}
    - absent: [text, ...]         # bytes no file under the folder may contain

Output is normalised before comparing: the manifest folder's path becomes `<ROOT>`, and an
upload's `"hashed"` count in plan JSON becomes `<TIMING>` (how many files the plan re-reads
depends on whether they changed within the file system's timestamp resolution of the last hash,
i.e. on timing).
`pytest --update-golden tests/engine/test_scenarios.py` rewrites the golden files.
"""

from __future__ import annotations

import glob
import re
import shlex
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from enginekit import Cli, CliResult
from golden import check_golden
from ruamel.yaml import YAML

SCENARIOS = Path(__file__).parent / "scenarios"
HASHED = re.compile(r'("hashed": )\d+')


def _stories() -> list[Path]:
    return sorted(p for p in SCENARIOS.iterdir() if (p / "story.yaml").is_file())


@pytest.mark.parametrize("scenario", _stories(), ids=lambda p: p.name)
def test_scenario(scenario: Path, project: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch,
                  update_golden: bool) -> None:
    story = YAML(typ="safe").load((scenario / "story.yaml").read_text())
    if (scenario / "files").is_dir():
        shutil.copytree(scenario / "files", project, dirs_exist_ok=True)
    shutil.copyfile(scenario / "v1.yaml", project / "amlctl.yaml")
    for number, step in enumerate(story["steps"], 1):
        where = f"{scenario.name} step {number} ({_describe(step)})"
        _run_step(step, scenario, project, cli, monkeypatch, where, update_golden)


def _describe(step: dict[str, Any]) -> str:
    key = next(iter(step))
    return f"{key}: {step[key]}"


def _run_step(step: dict[str, Any], scenario: Path, root: Path, cli: Cli,
              monkeypatch: pytest.MonkeyPatch, where: str, update_golden: bool) -> None:
    if "amlctl" in step:
        result = _normalised(cli(*shlex.split(step["amlctl"])), root)
        _check_output(step, result, scenario, where, update_golden)
    elif "manifest" in step:
        shutil.copyfile(scenario / step["manifest"], root / "amlctl.yaml")
    elif "env" in step:
        for name, value in step["env"].items():
            monkeypatch.setenv(name, str(value))
    elif "write" in step:
        for relpath, text in step["write"].items():
            (root / relpath).parent.mkdir(parents=True, exist_ok=True)
            (root / relpath).write_text(text)
    elif "remove" in step:
        for relpath in step["remove"]:
            (root / relpath).unlink()
    elif "exists" in step:
        for pattern in step["exists"]:
            assert glob.glob(pattern, root_dir=root), f"{where}: nothing matches {pattern}"
    elif "missing" in step:
        for pattern in step["missing"]:
            found = glob.glob(pattern, root_dir=root)
            assert not found, f"{where}: {found} should not exist"
    elif "sql" in step:
        query = step["sql"]
        with sqlite3.connect(root / query["db"]) as conn:
            rows = [list(r) for r in conn.execute(query["query"]).fetchall()]
        assert rows == query["rows"], f"{where}: {rows}"
    elif "absent" in step:
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                for text in step["absent"]:
                    assert text.encode() not in data, f"{where}: {text!r} found in {path}"
    else:
        raise AssertionError(f"{where}: unknown step")


def _normalised(result: CliResult, root: Path) -> CliResult:
    def clean(text: str) -> str:
        for spelling in (str(root.resolve()), str(root)):
            text = text.replace(spelling, "<ROOT>")
        return HASHED.sub(r"\1<TIMING>", text)

    return CliResult(result.code, clean(result.stdout), clean(result.stderr))


def _check_output(step: dict[str, Any], result: CliResult, scenario: Path, where: str,
                  update_golden: bool) -> None:
    context = f"{where}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    assert result.code == step.get("exit", 0), f"exit code {result.code}: {context}"
    for text in step.get("out", []):
        assert text in result.stdout, f"stdout lacks {text!r}: {context}"
    for text in step.get("err", []):
        assert text in result.stderr, f"stderr lacks {text!r}: {context}"
    for text in step.get("lacks", []):
        assert text not in result.stdout + result.stderr, f"output has {text!r}: {context}"
    if "golden" in step:
        check_golden(scenario / step["golden"], result.stdout, update_golden, f": {context}")
