"""Bad plan files and `--out` paths: a one-line error, exit 1, nothing left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from enginekit import Cli


def files_in(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if ".amlctl" not in p.parts}


def assert_one_line_error(result: object, needle: str) -> None:
    code, stderr = result.code, result.stderr  # type: ignore[attr-defined]
    assert code == 1, result
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and needle in lines[0], stderr


@pytest.mark.parametrize(("out", "needle"), [
    ("missing/plan.json", "missing/plan.json: no folder missing to write the plan file in"),
    ("adir", "adir: is a folder; give a file name (e.g. adir/plan.json)"),
])
def test_plan_out_to_a_path_that_cannot_be_a_file(
    project: Path, cli: Cli, out: str, needle: str
) -> None:
    (project / "adir").mkdir()
    before = files_in(project)
    result = cli("plan", "--out", out)
    assert_one_line_error(result, needle)
    assert result.stdout == ""  # refused before planning
    assert files_in(project) == before  # no `.adir.tmp` or anything else


def test_plan_out_that_cannot_be_written_leaves_no_temp_file(project: Path, cli: Cli) -> None:
    if os.geteuid() == 0:
        # root writes anywhere: a name too long for the file system fails the same way
        out = "x" * 250 + ".json"
    else:
        (project / "locked").mkdir(mode=0o555)
        out = "locked/plan.json"
    before = files_in(project)
    result = cli("plan", "--out", out)
    assert result.code == 1 and "cannot write the plan file" in result.stderr, result
    assert "Traceback" not in result.stderr
    assert files_in(project) == before


def saved_plan(project: Path, cli: Cli) -> dict[str, object]:
    assert cli("plan", "--out", "plan.json").code == 0
    return json.loads((project / "plan.json").read_text())


def test_apply_of_a_folder_or_a_fifo(project: Path, cli: Cli) -> None:
    (project / "adir").mkdir()
    assert_one_line_error(cli("apply", "adir"), "adir: is a folder, not a plan file")
    os.mkfifo(project / "fifo")
    assert_one_line_error(cli("apply", "fifo"), "fifo: not a regular file")
    assert not (project / ".amlctl" / "state.db").exists()  # nothing applied


@pytest.mark.parametrize("key", ["manifest", "live_fingerprint", "targets", "plan", "destroy"])
def test_apply_of_a_plan_file_missing_a_key(project: Path, cli: Cli, key: str) -> None:
    body = saved_plan(project, cli)
    del body[key]
    (project / "plan.json").write_text(json.dumps(body))
    assert_one_line_error(cli("apply", "plan.json"),
                          f"plan.json: not a complete plan file: key {key!r} is missing")
    assert not (project / ".amlctl" / "workspaces").exists()  # nothing applied


@pytest.mark.parametrize(("key", "value", "needle"), [
    ("targets", "upload.digits", "key 'targets' must be a list of strings"),
    ("targets", [1], "key 'targets' must be a list of strings"),
    ("destroy", "yes", "key 'destroy' must be a bool"),
    ("plan", [], "key 'plan' must be a dict"),
])
def test_apply_of_a_plan_file_with_a_wrong_type(
    project: Path, cli: Cli, key: str, value: object, needle: str
) -> None:
    body = saved_plan(project, cli)
    body[key] = value
    (project / "plan.json").write_text(json.dumps(body))
    assert_one_line_error(cli("apply", "plan.json"), needle)


@pytest.mark.parametrize("content", [b"", b"\xff\xfe garbage", b"[1, 2]", b"{" * 100000])
def test_apply_of_garbage(project: Path, cli: Cli, content: bytes) -> None:
    (project / "plan.json").write_bytes(content)
    result = cli("apply", "plan.json")
    assert result.code == 1 and "plan.json: not a" in result.stderr, result
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("document", [{"resource_changes": [1]},
                                      {"resource_changes": [{"type": "upload"}]}])
def test_apply_of_a_plan_file_with_a_damaged_document(
    project: Path, cli: Cli, document: dict[str, object]
) -> None:
    body = saved_plan(project, cli)
    body["plan"] = document
    (project / "plan.json").write_text(json.dumps(body))
    assert_one_line_error(cli("apply", "plan.json"), "the saved plan file is damaged")
