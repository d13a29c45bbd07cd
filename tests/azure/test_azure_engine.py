"""The quickstart manifest planned and applied on the azure backend through the real engine.

The real SDK runs against the fake service and Azurite (only the network edge is replaced),
run history included. The workspace exists beforehand, owned by the stack (its creation is
tested in test_azure_workspace_create.py).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure

from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.base import OWNER_TAG

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"


@pytest.fixture
def context(fake: FakeAzure, token_auth: Any, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Any:
    from amlctl.engine.planner import Context, bind_state
    from amlctl.manifest.loader import load_manifest

    shutil.copytree(EXAMPLE, tmp_path / "mnist")
    manifest = tmp_path / "mnist" / "amlctl.yaml"
    edit = getattr(request, "param", None)
    if edit:
        manifest.write_text(edit(manifest.read_text()))
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.setenv("RUN_TOKEN", "first-Token-1111")  # for manifests that ask for it
    monkeypatch.delenv("AMLCTL_HOME", raising=False)
    loaded = load_manifest(tmp_path / "mnist" / "amlctl.yaml")
    fake.add_workspace("mnist-rg", "mnist-ws", tags={"team": "vision", OWNER_TAG: "mnist"})
    state = tmp_path / "mnist" / ".amlctl"
    provider = AzureProvider(loaded.manifest.workspace.model_dump(), "mnist", state,
                             auth=token_auth, cloud="AzureCloud",
                             policy=RetryPolicy(sleep=lambda _s: None),
                             compute_settings=ComputeSettings(sleep=lambda _s: None))
    ctx = bind_state(Context(loaded, provider, provider.state_store(), state, "azure"))
    yield ctx
    ctx.close()


def test_apply_then_plan_again_is_empty(context: Any, fake: FakeAzure) -> None:
    """apply creates the cluster, experiment, upload and run; a second plan has no changes."""
    from amlctl.engine.executor import apply_plan
    from amlctl.engine.plan import Action
    from amlctl.engine.planner import make_plan

    first = make_plan(context)
    actions = {c.address: c.action for c in first.changes}
    assert actions == {"workspace": Action.NOOP, "compute.cpu-cluster": Action.CREATE,
                       "experiment.tensorflow_experiment": Action.CREATE,
                       "upload.mnist": Action.CREATE, "run.tf-mnist": Action.CREATE}
    result = apply_plan(context, first)
    assert result.ok, result
    second = make_plan(context)
    assert {c.address: c.action for c in second.changes if c.action is not Action.NOOP} == {}
    (start,) = fake.calls_to("POST", "/snapshotrun")
    rc = start.json()["Configuration"]
    assert (rc["tensorflow"]["workerCount"], rc["tensorflow"]["parameterServerCount"],
            rc["nodeCount"]) == (2, 1, 2)
    assert rc["dataReferences"]["input_data"]["pathOnDataStore"] == "mnist_dataset"
    default = context.provider._datastores().default()
    container = default.blob_service.get_container_client(default.container_name)
    uploaded = [b.name for b in container.list_blobs(name_starts_with="mnist_dataset/")]
    assert uploaded, "the upload sent files to blob storage"
    # the state went to a blob of the same container, with the applied record
    state = json.loads(container.download_blob("amlctl-state/mnist.json").readall())
    assert set(state["applied"]) == {"compute.cpu-cluster", "experiment.tensorflow_experiment",
                                     "upload.mnist"}
    assert [e["state"] for e in state["journal"]] == ["done"] * 5  # 3 creates, a sync, a submit


def with_secret_token(text: str) -> str:
    old = "env_vars: {TF_CPP_MIN_LOG_LEVEL: 2, TF_ENABLE_ONEDNN_OPTS: 0}"
    assert old in text, "the mnist example's env_vars line changed"
    return text.replace(old, "env_vars: {TF_CPP_MIN_LOG_LEVEL: 2, TF_ENABLE_ONEDNN_OPTS: 0, "
                             "TOKEN: \"{{ secret_env('RUN_TOKEN') }}\"}")


@pytest.mark.parametrize("context", [with_secret_token], indirect=True)
def test_a_rotated_run_secret_does_not_submit_again(context: Any, fake: FakeAzure,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """The run gets the secret; a new value of it is not a new definition."""
    from amlctl.engine.executor import apply_plan
    from amlctl.engine.plan import Action
    from amlctl.engine.planner import make_plan
    from amlctl.manifest.loader import load_manifest

    assert apply_plan(context, make_plan(context)).ok
    (start,) = fake.calls_to("POST", "/snapshotrun")
    env = start.json()["Configuration"]["environment"]["environmentVariables"]
    assert env == {"TF_CPP_MIN_LOG_LEVEL": "2", "TF_ENABLE_ONEDNN_OPTS": "0",
                   "TOKEN": "first-Token-1111"}  # the training process gets it
    monkeypatch.setenv("RUN_TOKEN", "second-Token-2222")
    context.loaded = load_manifest(context.loaded.path)
    plan = make_plan(context)
    assert {c.address: c.action for c in plan.changes}["run.tf-mnist"] is Action.NOOP
    assert len(fake.calls_to("POST", "/snapshotrun")) == 1
    # shown as a sensitive change needing no action, from keyed fingerprints in the state blob
    assert plan.notes == ("run.tf-mnist: secret env var TOKEN changed (sensitive): takes "
                          "effect on the next submission",)
    assert not plan.has_changes
    default = context.provider._datastores().default()
    state = default.blob_service.get_container_client(default.container_name).download_blob(
        "amlctl-state/mnist.json").readall()
    assert b"first-Token" not in state and b"second-Token" not in state
    recorded = json.loads(state)["applied"]["run.tf-mnist"]["attrs"]["env_secrets"]
    assert recorded["TOKEN"].startswith("sha256:")


def test_runs_of_this_stack_outside_its_records_are_listed_and_canceled(
        context: Any, fake: FakeAzure) -> None:
    """A run tagged with the stack but unknown to this runner (its record lost, or a run
    since removed from the manifest) shows in `runs` and `destroy` cancels it."""
    from amlctl.engine.executor import apply_plan
    from amlctl.engine.planner import make_destroy_plan, make_plan
    from amlctl.providers.azure.runs import RUN_NAME_TAG, build_run
    from amlctl.providers.base import SPEC_HASH_TAG, ComputeRef, RunRequest
    from amlctl.runs.definition import definition_of

    fake.history.hold_runs = True  # both stay queued, so both are active
    assert apply_plan(context, make_plan(context)).ok
    provider = context.provider
    (ours,) = provider.list_runs()
    model = context.loaded.manifest.runs["tf-mnist"]
    stray = RunRequest(name="old-experiment-run", spec_hash="feedfacefeedface",
                       run=definition_of(model),
                       source_dir=context.loaded.root / model.source_directory,
                       compute=ComputeRef(model.compute, max_nodes=2))
    built = build_run(stray, "mnist", provider._datastore_for)
    provider.runs().submit("tensorflow_experiment", built.config, built.tags, "stray_run_1")
    assert built.tags[RUN_NAME_TAG] == "old-experiment-run"
    assert built.tags[SPEC_HASH_TAG] == "feedfacefeedface"
    assert {r.id for r in provider.list_runs()} == {ours.id, "stray_run_1"}
    destroy = make_destroy_plan(context)
    canceled = {i for c in destroy.changes if c.kind == "run" for i in c.detail["run_ids"]}
    assert canceled == {ours.id, "stray_run_1"}
    assert apply_plan(context, destroy).ok
    for run_id in (ours.id, "stray_run_1"):
        assert fake.calls_to("POST", f"/runId/{run_id}/cancel")
