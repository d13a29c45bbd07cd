"""A run's metrics on the azure backend, read through the real azureml SDK (`Run.get_metrics()`)
from the fake's metric routes (tests/azure/fake_history.py): the provider, then the CLI in
subprocesses (`metrics`, `runs`, `status`, `watch`); only the network edge is replaced."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure
from test_azure_cli import Runner, ok, runner, write_project

from amlctl.manifest.models import Run
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.base import ComputeRef, RunRequest
from amlctl.runs.definition import definition_of

__all__ = ["runner"]  # the CLI runner fixture, shared with test_azure_cli

WORKSPACE = {"name": "ml-ws", "subscription_id": SUBSCRIPTION, "resource_group": "ml-rg",
             "location": "westeurope", "create_resource_group": False, "tags": {}}
RUN = {"experiment": "mnist", "compute": "cpu", "source_directory": "src",
       "entry_script": "train.py"}


@pytest.fixture
def provider(fake: FakeAzure, token_auth: Any, tmp_path: Path) -> AzureProvider:
    fake.add_workspace("ml-rg", "ml-ws")
    fake.add_compute("ml-rg", "ml-ws", "cpu", max_nodes=2)
    return AzureProvider(WORKSPACE, "demo", tmp_path / "state", auth=token_auth,
                         cloud="AzureCloud", policy=RetryPolicy(sleep=lambda _s: None))


def test_metrics_come_from_run_history(fake: FakeAzure, provider: AzureProvider,
                                       tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text("print('training')\n")
    info = provider.submit_run(RunRequest(name="train", spec_hash="0123456789abcdef",
                                          run=definition_of(Run.model_validate(RUN)),
                                          source_dir=source,
                                          compute=ComputeRef(RUN["compute"], max_nodes=2)))
    assert provider.run_metrics(info.id) == []
    (ws,) = fake.workspaces.values()
    for step, loss in ((10, 2.0), (20, 1.0), (30, 0.5)):
        fake.history.log_metric(ws, info.id, "loss", loss, step)
    fake.history.log_metric(ws, info.id, "accuracy", 0.93, 30)

    found = {s.name: s for s in provider.run_metrics(info.id)}
    assert sorted(found) == ["accuracy", "loss"]
    assert found["loss"].values == (2.0, 1.0, 0.5)
    assert found["loss"].steps == (0, 1, 2)  # get_metrics() gives the order, not the steps
    assert (found["accuracy"].values, found["accuracy"].last) == ((0.93,), 0.93)
    assert fake.calls_to("POST", f"/runs/{info.id}/list")  # read from the service
    assert {c.json()["metricName"] for c in fake.calls_to("POST", f"/runs/{info.id}/full")} \
        == {"loss", "accuracy"}


def test_the_cli_shows_a_runs_metrics(fake: FakeAzure, runner: Callable[[str], Runner],
                                      tmp_path: Path) -> None:
    amlctl = runner("a")
    checkout = write_project(tmp_path / "checkout")
    ok(amlctl("--backend", "azure", "apply", "--auto-approve", cwd=checkout))
    (ws,) = fake.workspaces.values()
    (run_id,) = fake.history.runs[next(iter(fake.history.runs))]
    for step, loss in ((1, 1.0), (2, 0.5), (3, 0.25)):
        fake.history.log_metric(ws, run_id, "loss", loss, step)

    shown = json.loads(ok(amlctl("--backend", "azure", "metrics", "run.ps", "--json",
                                 cwd=checkout)).stdout)
    assert shown["run"] == run_id
    assert shown["metrics"]["loss"]["points"] == [[0, 1.0], [1, 0.5], [2, 0.25]]
    table = ok(amlctl("--backend", "azure", "metrics", "run.ps", cwd=checkout)).stdout
    assert table.splitlines()[1].split()[:5] == ["loss", "0.25", "0.25", "1", "3"]
    listed = json.loads(ok(amlctl("--backend", "azure", "runs", "--json", cwd=checkout)).stdout)
    assert listed[0]["metrics"] == {"loss": 0.25}
    status = json.loads(ok(amlctl("--backend", "azure", "status", "--json",
                                  cwd=checkout)).stdout)
    assert status["runs"][0]["metrics"] == {"loss": 0.25}

    # watch, piped: plain lines until the run (driven by the fake) completes; exit 0
    watched = ok(amlctl("--backend", "azure", "watch", "run.ps", "--interval", "0.1",
                        cwd=checkout))
    views = [line for line in watched.stdout.splitlines() if "worker:0 " in line]
    assert views[-1].split("  ")[1].startswith("Completed ")
    # each process by the name its log gives it, as on the other backends
    assert "ps:0 Completed, worker:0 Completed, worker:1 Completed" in views[-1], views
    assert views[-1].endswith("loss=0.25")
    assert f"Run {run_id}: Completed" in watched.stdout
