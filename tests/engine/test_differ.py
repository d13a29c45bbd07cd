"""The differ is pure: desired and live state in, changes and drift out."""

from __future__ import annotations

from typing import Any

import pytest

from amlctl.engine.desired import Desired
from amlctl.engine.differ import DiffInput, diff
from amlctl.engine.plan import Action, Change
from amlctl.errors import PlanError
from amlctl.providers.base import LiveObject, RunInfo, fingerprint
from amlctl.uploads.model import FileChange, SyncPlan

STACK = "mnist"
UPDATABLE = {
    "compute": frozenset({"min_nodes", "max_nodes", "idle_seconds_before_scaledown", "tags"}),
    "datastore": frozenset({"account_key", "account_name", "container_name"}),
    "workspace": frozenset({"tags"}),
    "experiment": frozenset({"tags"}),
}
WORKSPACE = {"name": "ws", "subscription_id": "sub", "resource_group": "rg",
             "location": "westeurope", "tags": {}}
COMPUTE = {"vm_size": "Standard_D2_v3", "vm_priority": "dedicated", "min_nodes": 0,
           "max_nodes": 2, "idle_seconds_before_scaledown": 300, "vnet": None, "tags": {}}


def ctx(**kw: Any) -> DiffInput:
    return DiffInput(stack=STACK, updatable=lambda kind: UPDATABLE.get(kind, frozenset()), **kw)


def want(address: str, attrs: dict[str, Any], *, secrets: dict[str, str] | None = None,
         prevent_destroy: bool = False) -> Desired:
    kind, _, name = address.partition(".")
    deps = frozenset() if kind == "workspace" else frozenset({"workspace"})
    return Desired(address, kind, name or "ws", attrs, deps, secrets or {}, prevent_destroy)


def have(address: str, attrs: dict[str, Any], owner: str | None = STACK) -> LiveObject:
    return LiveObject(address, attrs, owner)


def desired_of(*items: Desired) -> dict[str, Desired]:
    return {"workspace": want("workspace", WORKSPACE), **{d.address: d for d in items}}


def live_of(*items: LiveObject) -> dict[str, LiveObject]:
    return {"workspace": have("workspace", WORKSPACE), **{o.address: o for o in items}}


def change_of(changes: list[Change], address: str) -> Change:
    return next(c for c in changes if c.address == address)


def test_missing_objects_are_created_in_dependency_order() -> None:
    desired = desired_of(want("experiment.e", {"tags": {}}), want("compute.c", COMPUTE),
                         want("datastore.d", {"type": "azure_blob"}))
    changes, drift = diff(desired, {}, ctx())
    assert [(c.address, c.action) for c in changes] == [
        ("workspace", Action.CREATE), ("datastore.d", Action.CREATE),
        ("compute.c", Action.CREATE), ("experiment.e", Action.CREATE)]
    assert changes[2].before is None and changes[2].after == COMPUTE
    assert drift == []


def test_equal_objects_are_no_ops_and_empty_maps_equal_missing_ones() -> None:
    live_attrs = {k: v for k, v in COMPUTE.items() if k != "tags"}  # service dropped {} tags
    changes, _ = diff(desired_of(want("compute.c", COMPUTE)),
                      live_of(have("compute.c", live_attrs)), ctx())
    assert {c.action for c in changes} == {Action.NOOP}


def test_updatable_fields_change_in_place() -> None:
    changes, _ = diff(desired_of(want("compute.c", {**COMPUTE, "max_nodes": 5,
                                                    "tags": {"team": "a"}})),
                      live_of(have("compute.c", COMPUTE)), ctx())
    change = change_of(changes, "compute.c")
    assert change.action is Action.UPDATE
    assert [(f.name, f.before, f.after, f.forces_replacement) for f in change.fields] == [
        ("max_nodes", 2, 5, False), ("tags", {}, {"team": "a"}, False)]


@pytest.mark.parametrize("field, value", [
    ("vm_size", "Standard_D4_v3"), ("vm_priority", "lowpriority"),
    ("vnet", {"resource_group": "net", "name": "vnet", "subnet": "default"}),
])
def test_other_fields_force_replacement(field: str, value: Any) -> None:
    changes, _ = diff(desired_of(want("compute.c", {**COMPUTE, field: value, "max_nodes": 3})),
                      live_of(have("compute.c", COMPUTE)), ctx())
    change = change_of(changes, "compute.c")
    assert change.action is Action.REPLACE
    assert {f.name: f.forces_replacement for f in change.fields} == {
        field: True, "max_nodes": False}
    assert change.reasons == (f"{field} cannot change in place",)


def test_replace_on_request_without_differences() -> None:
    changes, _ = diff(desired_of(want("compute.c", COMPUTE)),
                      live_of(have("compute.c", COMPUTE)), ctx(replace=frozenset({"compute.c"})))
    change = change_of(changes, "compute.c")
    assert change.action is Action.REPLACE and change.fields == ()
    assert change.reasons == ("replacement requested with --replace",)


def test_owned_objects_missing_from_the_manifest_are_pruned() -> None:
    live = live_of(have("compute.old", COMPUTE), have("experiment.old", {"tags": {}}),
                   have("datastore.old", {"account_key": fingerprint("k")}))
    changes, _ = diff(desired_of(), live, ctx())
    deletes = {c.address: c for c in changes if c.action is Action.DELETE}
    assert set(deletes) == {"compute.old", "experiment.old", "datastore.old"}
    assert deletes["compute.old"].before == COMPUTE and deletes["compute.old"].after is None
    assert deletes["datastore.old"].sensitive_fields == {"account_key"}


def test_objects_of_others_are_never_pruned() -> None:
    live = live_of(have("compute.portal", COMPUTE, owner=None),
                   have("compute.theirs", COMPUTE, owner="another-stack"),
                   have("datastore.default", {"type": "workspace_default"}, owner=None))
    changes, _ = diff(desired_of(), live, ctx())
    assert [c.address for c in changes] == ["workspace"]


def test_declaring_an_unowned_object_asks_for_an_import() -> None:
    with pytest.raises(PlanError, match=r"compute.portal already exists in the workspace, "
                       r"created by something other than amlctl.*amlctl import compute.portal"):
        diff(desired_of(want("compute.portal", COMPUTE)),
             live_of(have("compute.portal", COMPUTE, owner=None)), ctx())
    with pytest.raises(PlanError, match="created by stack 'other'"):
        diff(desired_of(want("compute.c", COMPUTE)),
             live_of(have("compute.c", COMPUTE, owner="other")), ctx())


def test_secrets_compare_by_fingerprint_and_show_as_sensitive() -> None:
    attrs = {"account_name": "acct", "account_key": fingerprint("new")}
    desired = desired_of(want("datastore.d", attrs, secrets={"account_key": "new"}))
    same = diff(desired, live_of(have("datastore.d", attrs)), ctx())[0]
    assert change_of(same, "datastore.d").action is Action.NOOP
    assert change_of(same, "datastore.d").sensitive_fields == {"account_key"}

    rotated = diff(desired, live_of(have("datastore.d", {**attrs,
                                                         "account_key": fingerprint("old")})),
                   ctx())[0]
    change = change_of(rotated, "datastore.d")
    assert change.action is Action.UPDATE
    assert [(f.name, f.sensitive) for f in change.fields] == [("account_key", True)]
    assert "new" not in repr(change) and "old" not in repr(change.fields)


def test_write_only_secret_the_service_cannot_show_is_not_a_change() -> None:
    attrs = {"account_name": "acct", "account_key": fingerprint("k")}
    desired = desired_of(want("datastore.d", attrs, secrets={"account_key": "k"}))
    unseen = live_of(have("datastore.d", {**attrs, "account_key": None}))
    changes, _ = diff(desired, unseen, ctx(applied={"datastore.d": attrs}))
    assert change_of(changes, "datastore.d").action is Action.NOOP


@pytest.mark.parametrize("applied_key", [None, fingerprint("old")], ids=["added", "rotated"])
def test_a_secret_amlctl_did_not_set_to_this_value_is_a_change(applied_key: str | None
                                                               ) -> None:
    """Live None is "cannot tell": what amlctl last applied says whether the value is current."""
    attrs = {"account_name": "acct", "account_key": fingerprint("k")}
    desired = desired_of(want("datastore.d", attrs, secrets={"account_key": "k"}))
    unseen = live_of(have("datastore.d", {**attrs, "account_key": None}))
    applied = {"datastore.d": {**attrs, "account_key": applied_key}}
    change = change_of(diff(desired, unseen, ctx(applied=applied))[0], "datastore.d")
    assert change.action is Action.UPDATE
    assert [(f.name, f.before, f.sensitive) for f in change.fields] == [
        ("account_key", None, True)]
    # never applied by amlctl (imported): nothing says it differs, so nothing is replaced
    assert change_of(diff(desired, unseen, ctx())[0], "datastore.d").action is Action.NOOP


@pytest.mark.parametrize("field, value", [
    ("location", "northeurope"), ("resource_group", "other-rg"), ("subscription_id", "sub2")])
def test_workspace_identity_change_is_refused(field: str, value: str) -> None:
    desired = {"workspace": want("workspace", {**WORKSPACE, field: value})}
    with pytest.raises(PlanError, match=f"workspace: refusing to change {field}"):
        diff(desired, live_of(), ctx())


def test_workspace_tags_change_in_place() -> None:
    desired = {"workspace": want("workspace", {**WORKSPACE, "tags": {"team": "a"}})}
    changes, _ = diff(desired, live_of(), ctx())
    assert changes[0].action is Action.UPDATE


def test_prevent_destroy_blocks_replacement() -> None:
    desired = desired_of(want("compute.c", {**COMPUTE, "vm_size": "Standard_D4_v3"},
                              prevent_destroy=True))
    with pytest.raises(PlanError, match=r"prevent_destroy is set: compute\.c would be replaced"):
        diff(desired, live_of(have("compute.c", COMPUTE)), ctx())
    with pytest.raises(PlanError, match=r"compute\.c would be replaced"):
        diff(desired_of(want("compute.c", COMPUTE, prevent_destroy=True)),
             live_of(have("compute.c", COMPUTE)), ctx(replace=frozenset({"compute.c"})))
    # in-place changes are fine
    diff(desired_of(want("compute.c", {**COMPUTE, "max_nodes": 9}, prevent_destroy=True)),
         live_of(have("compute.c", COMPUTE)), ctx())


def test_drift_is_live_against_last_applied() -> None:
    live = live_of(have("compute.c", {**COMPUTE, "max_nodes": 5}))
    changes, drift = diff(desired_of(want("compute.c", COMPUTE)), live,
                          ctx(applied={"compute.c": COMPUTE}))
    assert [(d.address, [(f.name, f.before, f.after) for f in d.fields]) for d in drift] == [
        ("compute.c", [("max_nodes", 2, 5)])]
    assert change_of(changes, "compute.c").action is Action.UPDATE
    # never applied by amlctl (just imported, say): no history, so no drift to report
    assert diff(desired_of(want("compute.c", COMPUTE)), live, ctx())[1] == []


def test_write_only_secrets_do_not_drift_and_changed_ones_stay_sensitive() -> None:
    attrs = {"account_name": "acct", "account_key": fingerprint("k")}
    desired = desired_of(want("datastore.d", attrs, secrets={"account_key": "k"}))
    unseen = live_of(have("datastore.d", {**attrs, "account_key": None}))
    assert diff(desired, unseen, ctx(applied={"datastore.d": attrs}))[1] == []
    rotated = live_of(have("datastore.d", {**attrs, "account_key": fingerprint("other")}))
    drift = diff(desired, rotated, ctx(applied={"datastore.d": attrs}))[1]
    assert [(f.name, f.sensitive) for d in drift for f in d.fields] == [("account_key", True)]


def test_drift_without_a_change_when_the_manifest_moved_the_same_way() -> None:
    live = live_of(have("compute.c", {**COMPUTE, "max_nodes": 5}))
    changes, drift = diff(desired_of(want("compute.c", {**COMPUTE, "max_nodes": 5})), live,
                          ctx(applied={"compute.c": COMPUTE}))
    assert change_of(changes, "compute.c").action is Action.NOOP
    assert len(drift) == 1


def _sync(add: tuple[FileChange, ...] = (), change: tuple[FileChange, ...] = ()) -> SyncPlan:
    return SyncPlan(add=add, change=change, delete=(), unchanged=0, kept_extra=0, hashed=0,
                    delete_extra=False, remote_digest="d")


UPLOAD = {"datastore": "default", "target_path": "data", "delete_extra": False,
          "exclude": [], "src_dir": "/src"}


def test_upload_actions_follow_the_file_difference() -> None:
    desired = desired_of(want("upload.u", UPLOAD))
    recorded = live_of(have("upload.u", {"datastore": "default", "target_path": "data"}))
    new_file = (FileChange("a.csv", 3),)
    created = diff(desired, live_of(), ctx(uploads={"upload.u": _sync(add=new_file)}))[0]
    assert change_of(created, "upload.u").action is Action.CREATE
    assert change_of(created, "upload.u").detail["add"] == [
        {"path": "a.csv", "size": 3, "sha256": None}]
    same = diff(desired, recorded, ctx(uploads={"upload.u": _sync()}))[0]
    assert change_of(same, "upload.u").action is Action.NOOP
    changed = diff(desired, recorded, ctx(uploads={"upload.u": _sync(change=new_file)}))[0]
    assert change_of(changed, "upload.u").action is Action.UPDATE
    moved = diff(desired_of(want("upload.u", {**UPLOAD, "target_path": "elsewhere"})),
                 recorded, ctx(uploads={"upload.u": _sync()}))[0]
    assert change_of(moved, "upload.u").action is Action.UPDATE


def _run(run_id: str) -> RunInfo:
    return RunInfo(id=run_id, name="r", experiment="e", spec_hash="h", status="Completed",
                   compute="c", created_at=0.0)


def test_runs_are_submitted_once_per_definition() -> None:
    desired = desired_of(want("run.r", {"experiment": "e", "compute": "c", "spec_hash": "h"}))
    fresh = change_of(diff(desired, live_of(), ctx())[0], "run.r")
    assert fresh.action is Action.CREATE and fresh.detail == {"submit": True}
    done = change_of(diff(desired, live_of(), ctx(runs={"run.r": [_run("r2"), _run("r1")]}))[0],
                     "run.r")
    assert done.action is Action.NOOP and done.detail["run_id"] == "r2"
    again = change_of(diff(desired, live_of(), ctx(runs={"run.r": [_run("r1")]},
                                                   replace=frozenset({"run.r"})))[0], "run.r")
    assert again.action is Action.CREATE
    assert again.reasons == ("resubmission requested with --replace",)


def test_vm_size_spelled_in_another_case_is_not_a_change() -> None:
    """Azure returns sizes in its own spelling (STANDARD_D2_V2); that alone plans nothing."""
    want = Desired("compute.cpu", "compute", "cpu",
                   {"vm_size": "Standard_D2_v2", "max_nodes": 2, "location": "westeurope"})
    have = LiveObject("compute.cpu", {"vm_size": "STANDARD_D2_V2", "max_nodes": 2,
                                      "location": "WestEurope"}, "demo")
    changes, _ = diff({"compute.cpu": want}, {"compute.cpu": have},
                      DiffInput(stack="demo", updatable=lambda _k: frozenset({"max_nodes"})))
    assert changes[0].action is Action.NOOP
