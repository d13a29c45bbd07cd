"""Runs on the azure backend end to end through the real azureml SDK: `SdkRunService` talks to
the fake run history / content / execution services (tests/azure/fake_history.py) over HTTPS;
only the network edge is replaced.

Covers submission (snapshot upload, start with a client-chosen run id, tags), runs found by
tag filters, status transitions, cancel, logs per role, following a run, and exactly-once
submission when the service fails part way.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure

from amlctl.errors import ProviderError, UsageError
from amlctl.manifest.models import Run
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.base import OWNER_TAG, SPEC_HASH_TAG, ComputeRef, RunRequest
from amlctl.runs.definition import definition_of
from amlctl.runs.identity import run_id

WORKSPACE = {"name": "ml-ws", "subscription_id": SUBSCRIPTION, "resource_group": "ml-rg",
             "location": "westeurope", "create_resource_group": False, "tags": {}}
PS_RUN = {
    "experiment": "mnist", "compute": "cpu", "source_directory": "src",
    "entry_script": "train.py", "arguments": {"--steps": 10},
    "distribution": {"type": "parameter_server", "node_count": 2, "worker_count": 2,
                     "parameter_server_count": 1},
    "environment": {"pip": ["tensorflow-cpu"]},
}
NO_WAIT = RetryPolicy(sleep=lambda _s: None)


@pytest.fixture
def provider(fake: FakeAzure, token_auth: Any, tmp_path: Path) -> AzureProvider:
    fake.add_workspace("ml-rg", "ml-ws")
    fake.add_compute("ml-rg", "ml-ws", "cpu", max_nodes=2)
    return AzureProvider(WORKSPACE, "demo", tmp_path / "state", auth=token_auth,
                         cloud="AzureCloud", policy=NO_WAIT)


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print('training')\n")
    (src / "util.py").write_text("X = 1\n")
    return src


def request(source: Path, spec_hash: str = "0123456789abcdef", name: str = "train",
            supersedes: str | None = None) -> RunRequest:
    return RunRequest(name=name, spec_hash=spec_hash,
                      run=definition_of(Run.model_validate(PS_RUN)), source_dir=source,
                      compute=ComputeRef(PS_RUN["compute"], max_nodes=2), secrets={},
                      supersedes=supersedes)


def service_runs(fake: FakeAzure) -> list[Any]:
    return [r for runs in fake.history.runs.values() for r in runs.values()]


def test_submit_uploads_the_snapshot_and_starts_a_tagged_run(fake: FakeAzure,
                                                             provider: AzureProvider,
                                                             source: Path) -> None:
    """One snapshot, one start with amlctl's own run id, the tags on the run."""
    info = provider.submit_run(request(source))
    assert info.id == run_id("demo", "train", "0123456789abcdef")
    assert (info.name, info.experiment, info.spec_hash, info.compute) == (
        "train", "mnist", "0123456789abcdef", "cpu")
    starts = fake.calls_to("POST", "/snapshotrun")
    assert [c.query["runId"] for c in starts] == [info.id]
    definition = starts[0].json()["Configuration"]
    assert (definition["framework"], definition["communicator"], definition["nodeCount"]) == (
        "TensorFlow", "ParameterServer", 2)
    assert definition["tensorflow"] == {"workerCount": 2, "parameterServerCount": 1}
    snapshot = fake.history.snapshots[starts[0].json()["SnapshotId"]]
    assert sorted(snapshot["files"]) == ["train.py", "util.py"]
    (run,) = service_runs(fake)
    assert run.tags[OWNER_TAG] == "demo" and run.tags[SPEC_HASH_TAG] == "0123456789abcdef"
    assert run.tags["amlctl.run"] == "train"


def test_runs_are_found_by_tags_and_move_through_statuses(fake: FakeAzure,
                                                          provider: AzureProvider,
                                                          source: Path) -> None:
    """list_runs filters on the server (OData tag filters); statuses come from the service."""
    first = provider.submit_run(request(source, "aaaaaaaaaaaaaaaa"))
    seen = [first.status]
    while seen[-1] != "Completed" and len(seen) < 10:
        got = provider.get_run(first.id)
        assert got is not None
        seen.append(got.status)
    assert seen[0] == "Queued" and seen[-1] == "Completed" and "Running" in seen
    done = provider.get_run(first.id)
    assert done is not None and done.started_at and done.ended_at
    assert done.ended_at >= done.started_at
    second = provider.submit_run(request(source, "bbbbbbbbbbbbbbbb", name="eval"))
    assert {r.id for r in provider.list_runs()} == {first.id, second.id}
    assert [r.id for r in provider.list_runs("mnist", "aaaaaaaaaaaaaaaa")] == [first.id]
    assert [r.id for r in provider.list_runs(name="eval")] == [second.id]
    assert provider.list_runs("mnist", "cccccccccccccccc") == []
    assert provider.list_runs("other-experiment") == []
    filters = [c.json()["filter"] for c in fake.calls_to("POST", "/runs:query")]
    assert any('Tags/amlctl.run eq "eval"' in f for f in filters)  # filtered by the service


def test_a_failed_run_reports_the_service_error(fake: FakeAzure, provider: AzureProvider,
                                                source: Path) -> None:
    fake.history.fail_runs = "ZeroDivisionError: division by zero (train.py line 3)"
    info = provider.submit_run(request(source))
    statuses = [provider.get_run(info.id).status for _ in range(4)]  # type: ignore[union-attr]
    assert statuses[-1] == "Failed"
    failed = provider.get_run(info.id)
    assert failed is not None and "ZeroDivisionError: division by zero" in (failed.error or "")


def test_cancel_and_logs_per_role(fake: FakeAzure, provider: AzureProvider,
                                  source: Path) -> None:
    """Cancel goes through the run's cancel URI; each process has its own log."""
    info = provider.submit_run(request(source))
    (ws,) = fake.workspaces.values()
    fake.history.set_status(ws, info.id, "Running")  # and it stays so until canceled
    fake.history.cancel_delay_reads = 1
    canceled = provider.cancel_run(info.id)
    assert canceled.status == "Running"  # CancelRequested: AML is still stopping it
    assert len(fake.calls_to("POST", f"/runId/{info.id}/cancel")) == 1
    final = provider.get_run(info.id)
    assert final is not None and final.status == "Canceled"
    lines = list(provider.run_logs(info.id))
    roles = sorted({line.split("]")[0].lstrip("[") for line in lines})
    assert roles == ["ps:0", "worker:0", "worker:1"]
    worker1 = list(provider.run_logs(info.id, role="worker:1"))
    assert worker1 and all(line.startswith("[worker:1] ") for line in worker1)
    assert any("ended Canceled" in line for line in worker1)
    workers = {line.split("]")[0] for line in provider.run_logs(info.id, role="worker")}
    assert workers == {"[worker:0", "[worker:1"}  # a role picks all its tasks
    with pytest.raises(ProviderError, match=r"no process 'chief' .* choose one of: ps, "
                                            r"worker, ps:0, worker:0, worker:1"):
        list(provider.run_logs(info.id, role="chief"))
    with pytest.raises(UsageError, match="--role cannot be combined with --follow"):
        list(provider.run_logs(info.id, role="worker:1", follow=True))
    # canceling a finished run sends nothing
    assert provider.cancel_run(info.id).status == "Canceled"
    assert len(fake.calls_to("POST", "/cancel")) == 1


def roles_of(provider: AzureProvider, run: str) -> list[tuple[str, str, str | None]]:
    return [(r.name, r.state, r.last_line) for r in provider.run_roles(run)]


def test_watch_shows_each_process_of_a_parameter_server_run(fake: FakeAzure,
                                                             provider: AzureProvider,
                                                             source: Path) -> None:
    """`run_roles` (what `amlctl watch` shows): the processes the run declares, queued until
    they log, then running with their latest log line, then the run's end state; a process
    the definition does not name shows once it has a log."""
    fake.history.hold_runs = True
    info = provider.submit_run(request(source))
    (ws,) = fake.workspaces.values()
    fake.history.write_log(ws, info.id, "user_logs/std_log_worker_2.txt", "step 1\nstep 2\n\n")
    # a run the service has not started: its logs are not read
    assert roles_of(provider, info.id) == [
        ("ps:0", "Queued", None), ("worker:0", "Queued", None), ("worker:1", "Queued", None)]

    fake.history.set_status(ws, info.id, "Running")
    assert roles_of(provider, info.id) == [
        ("ps:0", "Running", "ps_0: starting train.py on cpu"),
        ("worker:0", "Running", "worker_0: starting train.py on cpu"),
        ("worker:1", "Running", "worker_1: starting train.py on cpu"),
        ("worker:2", "Running", "step 2")]

    fake.history.set_status(ws, info.id, "Failed")
    assert roles_of(provider, info.id) == [
        ("ps:0", "Failed", f"ps_0: run {info.id} ended Failed"),
        ("worker:0", "Failed", f"worker_0: run {info.id} ended Failed"),
        ("worker:1", "Failed", f"worker_1: run {info.id} ended Failed"),
        ("worker:2", "Failed", "step 2")]
    assert provider.run_roles("no-such-run") == []


def test_watch_shows_a_listed_log_that_is_gone_as_empty(fake: FakeAzure,
                                                         provider: AzureProvider,
                                                         source: Path) -> None:
    """A log file the run lists but storage no longer holds (or has not written yet) is shown
    without a line, as on azure-v2, rather than failing the whole view."""
    fake.history.hold_runs = True
    info = provider.submit_run(request(source))
    (ws,) = fake.workspaces.values()
    fake.history.set_status(ws, info.id, "Running")
    fake.history._run(ws, info.id).logs["user_logs/std_log_worker_2.txt"] = "ExperimentRun/gone"
    assert roles_of(provider, info.id)[-2:] == [
        ("worker:1", "Running", "worker_1: starting train.py on cpu"),
        ("worker:2", "Running", None)]


def test_watch_shows_each_rank_of_an_mpi_run(fake: FakeAzure, provider: AzureProvider,
                                             source: Path) -> None:
    """An MPI run's ranks (processes per node x nodes), named `worker:RANK` as on the
    local backend, from the per-process logs Azure ML writes (`std_log_process_N`)."""
    mpi = {**PS_RUN, "distribution": {"type": "mpi", "node_count": 2,
                                      "process_count_per_node": 2}}
    fake.history.hold_runs = True
    info = provider.submit_run(RunRequest(
        name="mpi", spec_hash="fedcba9876543210", run=definition_of(Run.model_validate(mpi)),
        source_dir=source, compute=ComputeRef("cpu", max_nodes=2), secrets={}))
    (ws,) = fake.workspaces.values()
    fake.history.set_status(ws, info.id, "Completed")
    assert roles_of(provider, info.id) == [
        (f"worker:{rank}", "Completed", f"process_{rank}: run {info.id} ended Completed")
        for rank in range(4)]


def test_following_a_run_streams_until_it_ends(fake: FakeAzure, provider: AzureProvider,
                                               source: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """`logs --follow` is the SDK's wait_for_completion(show_output=True), line by line."""
    import azureml.core.run as sdk_run

    monkeypatch.setattr(sdk_run.time, "sleep", lambda _s: None)  # the SDK polls every 2-60 s
    info = provider.submit_run(request(source))
    lines = list(provider.run_logs(info.id, follow=True))
    text = "\n".join(lines)
    assert info.id in text
    assert "Completed" in text
    final = provider.get_run(info.id)
    assert final is not None and final.status == "Completed"


def test_a_500_after_the_run_was_created_leaves_exactly_one_tagged_run(
        fake: FakeAzure, provider: AzureProvider, source: Path) -> None:
    """The write after the create fails: amlctl looks the run up by its id and tags it;
    it never starts a second one."""
    fake.fail_next("PATCH", "/runs/", 500)
    info = provider.submit_run(request(source))
    assert len(fake.calls_to("POST", "/snapshotrun")) == 1
    (run,) = service_runs(fake)
    assert run.id == info.id and run.tags[OWNER_TAG] == "demo"
    assert [r.id for r in provider.list_runs("mnist", "0123456789abcdef")] == [info.id]


def test_the_tag_write_failing_for_good_is_reported_and_repaired_next_time(
        fake: FakeAzure, provider: AzureProvider, source: Path) -> None:
    """Tagging fails on every retry: the error says so; the next submission of the same spec
    finds the untagged run by its id, tags it, and starts nothing."""
    fake.fail_next("PATCH", "/runs/", 500, times=50)
    with pytest.raises(ProviderError, match=r"tagging run .* failed after 5 attempts"):
        provider.submit_run(request(source))
    assert len(service_runs(fake)) == 1
    assert provider.list_runs("mnist", "0123456789abcdef") == []  # untagged: invisible
    fake.failures.clear()
    again = provider.submit_run(request(source))
    assert len(fake.calls_to("POST", "/snapshotrun")) == 1
    (run,) = service_runs(fake)
    assert again.id == run.id and run.tags[SPEC_HASH_TAG] == "0123456789abcdef"


def test_a_failed_start_is_retried_only_because_the_run_does_not_exist(
        fake: FakeAzure, provider: AzureProvider, source: Path) -> None:
    """A 503 on the start itself: the run is looked up, absent, and the start retried."""
    fake.fail_next("POST", "/snapshotrun", 503)
    info = provider.submit_run(request(source))
    assert len(fake.calls_to("POST", "/snapshotrun")) == 2
    assert [r.id for r in service_runs(fake)] == [info.id]
    lookups = [c for c in fake.calls_to("GET", f"/runs/{info.id}") if c.status == 404]
    assert len(lookups) >= 2  # before the first start and before the retry


def test_the_service_refuses_a_second_start_with_the_same_id(fake: FakeAzure,
                                                             provider: AzureProvider,
                                                             token_auth: Any,
                                                             source: Path) -> None:
    """What a peer runner racing on the same spec meets: the service's conflict, not a second
    run; amlctl itself returns the existing run without a second start."""
    from azureml.core import Experiment, ScriptRunConfig, Workspace

    info = provider.submit_run(request(source))
    workspace = Workspace.get("ml-ws", auth=token_auth, subscription_id=SUBSCRIPTION,
                              resource_group="ml-rg")
    config = ScriptRunConfig(source_directory=str(source), script="train.py",
                             compute_target="cpu")
    with pytest.raises(Exception, match="already exists"):
        Experiment(workspace, "mnist").submit(config, run_id=info.id)
    assert provider.submit_run(request(source)).id == info.id
    assert len(service_runs(fake)) == 1
    assert len(fake.calls_to("POST", "/snapshotrun")) == 2  # ours once, the raw SDK's once


def test_a_deliberate_resubmission_gets_its_own_id(fake: FakeAzure, provider: AzureProvider,
                                                   source: Path) -> None:
    """--replace: a new run, whose id is the same for every runner replacing the same run."""
    first = provider.submit_run(request(source))
    second = provider.submit_run(request(source, supersedes=first.id))
    assert second.id != first.id
    assert provider.submit_run(request(source, supersedes=first.id)).id == second.id
    assert len(service_runs(fake)) == 2


def test_experiments_are_created_tagged_and_archived(fake: FakeAzure,
                                                     provider: AzureProvider) -> None:
    provider.create("experiment.mnist", {"tags": {"team": "vision"}}, {})
    live = provider.read_all()["experiment.mnist"]
    assert live.owner == "demo" and live.attrs == {"tags": {"team": "vision"}}
    provider.update("experiment.mnist", {"tags": {}}, ["tags"], {})
    assert provider.read_all()["experiment.mnist"].attrs == {"tags": {}}
    provider.delete("experiment.mnist")
    assert "experiment.mnist" not in provider.read_all()
    (exp,) = [e for exps in fake.history.experiments.values() for e in exps.values()]
    assert exp.archived is not None
