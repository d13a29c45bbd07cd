"""Planner: what `--target` keeps (the resource and what it depends on), over a real manifest
and the local backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from amlctl.engine.executor import apply_plan
from amlctl.engine.plan import Action, Plan
from amlctl.engine.planner import Context, make_plan, open_context
from amlctl.errors import UsageError
from amlctl.manifest.loader import load_manifest

MANIFEST = """\
version: 1
name: targets
workspace: {name: ws-targets, subscription_id: sub, resource_group: rg, location: westeurope}
computes:
  c1: {vm_size: Standard_D2_v3, max_nodes: 2}
  c2: {vm_size: Standard_D2_v3, max_nodes: 2}
datastores:
  a: {type: azure_blob, account_name: acct, container_name: a}
  b: {type: azure_blob, account_name: acct, container_name: b}
uploads:
  ua: {datastore: a, src_dir: data, target_path: ua}
  ud: {datastore: default, src_dir: data, target_path: ud}
experiments:
  e: {}
"""
RUN = """\
runs:
  r:
    experiment: e
    compute: c1
    source_directory: src
    entry_script: train.py
    arguments: ["--data", {datastore: a, path: ua}]
"""


@pytest.fixture
def folder(project: Path) -> Path:
    (project / "amlctl.yaml").write_text(MANIFEST)
    (project / "data").mkdir()
    (project / "data" / "x.csv").write_text("1\n")
    return project


@pytest.fixture
def context(folder: Path) -> Iterator[Context]:
    ctx = open_context(load_manifest(folder / "amlctl.yaml"))
    yield ctx
    ctx.close()


def addresses(plan: Plan) -> set[str]:
    return {c.address for c in plan.changes}


@pytest.mark.parametrize("targets, expected", [
    (["compute.c1"], {"workspace", "compute.c1"}),
    (["upload.ua"], {"workspace", "datastore.a", "upload.ua"}),
    (["upload.ud"], {"workspace", "upload.ud"}),  # the default datastore comes with it
    (["experiment.e", "datastore.b"], {"workspace", "experiment.e", "datastore.b"}),
    (["workspace"], {"workspace"}),
])
def test_target_keeps_the_resource_and_its_dependencies(
        context: Context, targets: list[str], expected: set[str]) -> None:
    plan = make_plan(context, targets=targets)
    assert addresses(plan) == expected
    assert all(c.action is Action.CREATE for c in plan.changes)


def test_no_target_plans_everything(context: Context) -> None:
    assert len(make_plan(context).changes) == 8


@pytest.mark.parametrize("target, message", [
    ("compute.nope", "--target compute.nope: no such resource in the manifest"),
    ("computer.c1", "is not a resource address"),
    ("compute", "is not a resource address"),
])
def test_bad_targets_are_refused(context: Context, target: str, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        make_plan(context, targets=[target])


def test_target_leaves_out_prunes_and_other_drift(folder: Path, context: Context) -> None:
    assert apply_plan(context, make_plan(context)).ok
    context.provider.edit("compute.c2", {"max_nodes": 7})  # drift, outside the target
    (folder / "amlctl.yaml").write_text(MANIFEST.replace("  b: {type: azure_blob, account_name: "
                                                         "acct, container_name: b}\n", ""))
    changed = open_context(load_manifest(folder / "amlctl.yaml"))
    try:
        full = make_plan(changed)
        assert {(c.address, c.action) for c in full.actionable} == {
            ("datastore.b", Action.DELETE), ("compute.c2", Action.UPDATE)}
        assert [d.address for d in full.drift] == ["compute.c2"]
        targeted = make_plan(changed, targets=["compute.c1"])
        assert not targeted.has_changes
        assert targeted.drift == ()
        assert addresses(targeted) == {"workspace", "compute.c1"}
    finally:
        changed.close()


def test_target_of_a_run_keeps_what_it_runs_on_and_reads(folder: Path) -> None:
    (folder / "amlctl.yaml").write_text(MANIFEST + RUN)
    (folder / "src").mkdir()
    (folder / "src" / "train.py").write_text("print('hi')\n")
    ctx = open_context(load_manifest(folder / "amlctl.yaml"))
    try:
        plan = make_plan(ctx, targets=["run.r"])
    finally:
        ctx.close()
    # Runs come after every upload (a command line may read any of them), not only the
    # uploads to the datastores its inputs name.
    assert addresses(plan) == {"workspace", "experiment.e", "compute.c1", "datastore.a",
                               "upload.ua", "upload.ud", "run.r"}
    assert plan.get("run.r").action is Action.CREATE



def test_apply_sends_the_files_of_the_plan_it_is_given(folder: Path, context: Context) -> None:
    """As Terraform applies the plan shown: a file added after the plan waits for the next
    plan; a planned file changed since is sent as it is now."""
    plan = make_plan(context, targets=["upload.ud"])
    (folder / "data" / "late.csv").write_text("added after the plan\n")
    (folder / "data" / "x.csv").write_text("2\n")
    assert apply_plan(context, plan).ok
    again = {c.address: c for c in make_plan(context, targets=["upload.ud"]).changes}
    files = again["upload.ud"].detail
    assert [f["path"] for f in files["add"]] == ["late.csv"]
    assert files["change"] == []
