"""The quickstart manifest planned and applied on the azure backend through the real engine.

The real SDK runs against the fake service and Azurite (only the network edge is replaced);
experiments and run submission go to the in-memory history double. Workspace creation (an ARM
template deployment) is not modelled, so the workspace exists beforehand, owned by the stack.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure
from history_double import HistoryDouble

from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.base import OWNER_TAG

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"


@pytest.fixture
def context(fake: FakeAzure, token_auth: Any, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Any:
    from amlctl.engine.planner import Context, bind_state
    from amlctl.manifest.loader import load_manifest

    shutil.copytree(EXAMPLE, tmp_path / "mnist")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.delenv("AMLCTL_HOME", raising=False)
    loaded = load_manifest(tmp_path / "mnist" / "amlctl.yaml")
    fake.add_workspace("mnist-rg", "mnist-ws", tags={"team": "vision", OWNER_TAG: "mnist"})
    state = tmp_path / "mnist" / ".amlctl"
    provider = AzureProvider(loaded.manifest.workspace.model_dump(), "mnist", state,
                             auth=token_auth, cloud="AzureCloud", run_service=HistoryDouble(),
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
    history = context.provider.runs()
    assert len(history.submissions) == 1
    rc = history.submissions[0].config.run_config
    assert (rc.tensorflow.worker_count, rc.tensorflow.parameter_server_count,
            rc.node_count) == (2, 1, 2)
    default = context.provider._datastores().default()
    container = default.blob_service.get_container_client(default.container_name)
    uploaded = [b.name for b in container.list_blobs(name_starts_with="mnist_dataset/")]
    assert uploaded, "the upload sent files to blob storage"
    # the state went to a blob of the same container, with the applied record
    state = json.loads(container.download_blob("amlctl-state/mnist.json").readall())
    assert set(state["applied"]) == {"compute.cpu-cluster", "experiment.tensorflow_experiment",
                                     "upload.mnist"}
    assert [e["state"] for e in state["journal"]] == ["done"] * 5  # 3 creates, a sync, a submit
