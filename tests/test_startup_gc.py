"""The command line pauses the cyclic garbage collector while a command starts (see
amlctl.cli.GC_PAUSED): no collection in a no-op plan or apply, the collector running as usual
once an apply has changes to make, and a program calling `main` getting its collector back as
it was.

Each case runs the real command in a fresh interpreter (the pause is about what start-up
allocates, which an interpreter that already imported amlctl would not allocate again).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "examples" / "mnist" / "amlctl.yaml"
UPLOAD = """\
version: 1
name: gc
workspace: {name: gc-ws, subscription_id: "0", resource_group: rg, location: westeurope}
uploads:
  data: {datastore: default, src_dir: data, target_path: data}
"""
# Runs `main(ARGS)` in this interpreter; records the collections made while it ran, what the
# apply's view saw when told the plan, and the collector's state once main returned.
PROBE = """\
import gc, json, sys
out = sys.argv.pop(1)
collections = []
gc.callbacks.append(lambda phase, info: phase == "stop" and collections.append(1))
seen = {}
from amlctl.cli import apply_view, main
made = apply_view.make_view

class Watching:
    def __init__(self, view):
        self.view = view
    def event(self, event):
        self.view.event(event)  # the first event is the plan
        seen.setdefault("enabled_at_plan", gc.isenabled())
        seen.setdefault("frozen_at_plan", gc.get_freeze_count())
    def __getattr__(self, name):
        return getattr(self.view, name)

apply_view.make_view = lambda style: Watching(made(style))
collections.clear()  # only those made while main runs
try:
    main(sys.argv[1:])
except SystemExit as done:
    seen["exit"] = done.code
seen.update(collections=len(collections), enabled_after=gc.isenabled(),
            frozen_after=gc.get_freeze_count())
json.dump(seen, open(out, "w"))
"""


def probe(tmp_path: Path, *args: str, disabled: bool = False) -> dict[str, object]:
    """What PROBE saw of `amlctl ARGS...` run by `main` in a fresh interpreter."""
    out = tmp_path / "seen.json"
    code = ("import gc; gc.disable()\n" if disabled else "") + PROBE
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLCTL_")}
    env["AMLCTL_HOME"] = str(tmp_path / "home")
    run = subprocess.run([sys.executable, "-c", code, str(out), *args], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return json.loads(out.read_text())


def upload_project(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "one.txt").write_text("1\n")
    (tmp_path / "amlctl.yaml").write_text(UPLOAD)


def test_validate_runs_without_a_collection_and_gives_the_collector_back(
        tmp_path: Path) -> None:
    seen = probe(tmp_path, "validate", "-f", str(MNIST))
    assert seen["exit"] == 0
    assert seen["collections"] == 0  # importing pydantic and the models alone would collect
    assert seen["enabled_after"] is True and seen["frozen_after"] == 0


def test_an_apply_with_changes_collects_as_usual_once_it_has_its_plan(tmp_path: Path) -> None:
    upload_project(tmp_path)
    seen = probe(tmp_path, "apply", "--auto-approve")
    assert seen["exit"] == 0
    assert (tmp_path / "home" / "state.db").is_file()  # it did apply
    # start-up's objects were frozen when the plan was shown; the collector is on again
    assert seen["enabled_at_plan"] is True
    assert isinstance(seen["frozen_at_plan"], int) and seen["frozen_at_plan"] > 10_000
    assert seen["enabled_after"] is True and seen["frozen_after"] == 0


def test_a_no_op_plan_and_apply_run_without_a_collection(tmp_path: Path) -> None:
    upload_project(tmp_path)
    assert probe(tmp_path, "apply", "--auto-approve")["exit"] == 0  # now nothing to do
    for args in (("plan",), ("apply", "--auto-approve")):
        seen = probe(tmp_path, *args)
        assert seen["exit"] == 0
        assert seen["collections"] == 0, args
        assert seen["enabled_after"] is True and seen["frozen_after"] == 0


def test_a_failing_command_gives_the_collector_back(tmp_path: Path) -> None:
    (tmp_path / "amlctl.yaml").write_text(UPLOAD.replace("src_dir: data", "src_dir: missing"))
    seen = probe(tmp_path, "plan")
    assert seen["exit"] == 1  # the upload's folder does not exist
    assert seen["enabled_after"] is True and seen["frozen_after"] == 0


def test_a_collector_the_caller_disabled_stays_disabled(tmp_path: Path) -> None:
    upload_project(tmp_path)
    seen = probe(tmp_path, "apply", "--auto-approve", disabled=True)
    assert seen["exit"] == 0
    assert seen["enabled_at_plan"] is False and seen["frozen_at_plan"] == 0
    assert seen["enabled_after"] is False and seen["frozen_after"] == 0


def test_commands_that_may_run_for_long_are_not_paused(tmp_path: Path) -> None:
    """`runs` (like logs --follow and watch) is not paused: the collector is on throughout."""
    upload_project(tmp_path)
    seen = probe(tmp_path, "runs")
    assert seen["exit"] == 0
    assert seen["collections"] > 0
    assert seen["enabled_after"] is True and seen["frozen_after"] == 0
