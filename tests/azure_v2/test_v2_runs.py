"""Runs on the azure-v2 backend: command jobs built by the real azure-ai-ml and sent to the fake
edge. What v2 sends for a parameter-server job is kept in golden/parameter_server_job.json
(`pytest --update-golden tests/azure_v2` rewrites it after a deliberate change: read the
diff)."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from fake_v2 import FakeV2Azure
from golden import check_golden
from v2_support import SUBSCRIPTION, FakeTokenCredential

from amlctl.errors import ProviderError
from amlctl.manifest.models import Run
from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.azure_v2 import history
from amlctl.providers.azure_v2.provider import AzureV2Provider
from amlctl.providers.base import OWNER_TAG, SPEC_HASH_TAG, ComputeRef, RunRequest
from amlctl.runs.definition import definition_of
from amlctl.runs.identity import run_id

GOLDEN = Path(__file__).parent / "golden" / "parameter_server_job.json"
RG, WS, STACK = "runs-rg", "runs-ws", "runs"
WORKSPACE = {"name": WS, "subscription_id": SUBSCRIPTION, "resource_group": RG,
             "location": "westeurope", "create_resource_group": False, "tags": {},
             "prevent_destroy": False}
PS_RUN = {
    "experiment": "tf", "compute": "cpu", "source_directory": "src",
    "entry_script": "train.py",
    "arguments": {"--steps": 300, "--data": {"datastore": "default", "path": "mnist",
                                             "mode": "mount"}},
    "inputs": {"labels": {"datastore": "default", "path": "labels", "mode": "download"}},
    "distribution": {"type": "parameter_server", "node_count": 2, "worker_count": 2,
                     "parameter_server_count": 1},
    "environment": {"pip": ["tensorflow-cpu"], "env_vars": {"TF_CPP_MIN_LOG_LEVEL": "2"}},
    "max_run_duration_seconds": 900, "tags": {"team": "vision"},
}


@pytest.fixture
def provider(fake: FakeV2Azure, credential: FakeTokenCredential, tmp_path: Path
             ) -> AzureV2Provider:
    fake.add_workspace(RG, WS, tags={OWNER_TAG: STACK})
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('training')\n")
    return AzureV2Provider(WORKSPACE, STACK, tmp_path / ".amlctl", credential=credential,
                           cloud="AzureCloud", policy=RetryPolicy(attempts=3,
                                                                  sleep=lambda _s: None),
                           compute_settings=ComputeSettings(sleep=lambda _s: None))


def request(tmp_path: Path, spec_hash: str = "0f1e2d3c4b5a6978", supersedes: str | None = None,
            **changes: Any) -> RunRequest:
    return RunRequest(name="tf-ps", spec_hash=spec_hash,
                      run=definition_of(Run.model_validate({**PS_RUN, **changes})),
                      source_dir=tmp_path / "src",
                      compute=ComputeRef(PS_RUN["compute"], max_nodes=4), secrets={},
                      supersedes=supersedes)


def job_puts(fake: FakeV2Azure) -> list[Any]:
    return [c for c in fake.calls_to("PUT", "/jobs/") if c.status in (200, 201)]


def normalised(body: dict[str, Any]) -> dict[str, Any]:
    """The job body without what differs between runs: the uploaded snapshot's asset id, and
    the git state of the checkout the tests run in (the SDK adds it to every job)."""
    text = json.dumps(body, sort_keys=True, indent=2)
    text = re.sub(r"/codes/[0-9a-f-]{36}/versions/\d+", "/codes/<snapshot>/versions/1", text)
    out = json.loads(text)
    props = out["body"]["properties"].get("properties") or {}
    for key in [k for k in props if k.startswith(("azureml.git.", "mlflow.source.git."))]:
        del props[key]
    return out


def test_parameter_server_job_matches_golden(provider: AzureV2Provider, fake: FakeV2Azure,
                                             tmp_path: Path, update_golden: bool) -> None:
    info = provider.submit_run(request(tmp_path))
    [put] = job_puts(fake)
    assert put.path.endswith(f"/jobs/{run_id(STACK, 'tf-ps', '0f1e2d3c4b5a6978')}")
    assert put.query["api-version"] in fake.v2_versions
    sent = normalised({"api-version": put.query["api-version"], "body": put.json()})
    props = sent["body"]["properties"]
    # the facts the golden file pins, stated here too so a regenerated golden cannot drop them
    assert props["distribution"] == {"distributionType": "TensorFlow",
                                     "parameterServerCount": 1, "workerCount": 2}
    assert props["resources"]["instanceCount"] == 2
    assert props["inputs"]["data"]["uri"] == "azureml://datastores/workspaceblobstore/paths/mnist"
    assert props["inputs"]["data"]["mode"] == "ReadOnlyMount"
    assert props["inputs"]["labels"]["mode"] == "Download"
    assert props["tags"][SPEC_HASH_TAG] == "0f1e2d3c4b5a6978"
    assert props["tags"][OWNER_TAG] == STACK and props["tags"]["amlctl.run"] == "tf-ps"
    assert props["experimentName"] == "tf"
    check_golden(GOLDEN, json.dumps(sent, sort_keys=True, indent=2) + "\n", update_golden)
    assert info.id == put.path.rsplit("/", 1)[1] and info.name == "tf-ps"
    assert [r.id for r in provider.list_runs(experiment="tf", name="tf-ps")] == [info.id]
    listed = fake.calls_to("GET", f"/workspaces/{WS}/jobs")
    assert listed[-1].query.get("tag") == OWNER_TAG, "runs are listed by the service's tag filter"


def test_submitting_the_same_run_again_finds_the_job(provider: AzureV2Provider,
                                                     fake: FakeV2Azure, tmp_path: Path) -> None:
    first = provider.submit_run(request(tmp_path))
    second = provider.submit_run(request(tmp_path))
    assert first.id == second.id
    assert len(job_puts(fake)) == 1
    other = provider.submit_run(request(tmp_path, spec_hash="aaaabbbbccccdddd"))
    assert other.id != first.id and len(job_puts(fake)) == 2


def test_a_500_after_the_job_was_created_leaves_one_job(provider: AzureV2Provider,
                                                        fake: FakeV2Azure,
                                                        tmp_path: Path) -> None:
    fake.fail_after_job_create = 1
    info = provider.submit_run(request(tmp_path))
    assert [c.status for c in fake.calls_to("PUT", "/jobs/")] == [500], \
        "the failed create was not sent again"
    assert list(fake.job_bodies(RG, WS)) == [info.id]
    assert len(provider.list_runs(name="tf-ps")) == 1


def test_cancel_goes_through_begin_cancel(provider: AzureV2Provider, fake: FakeV2Azure,
                                          tmp_path: Path) -> None:
    info = provider.submit_run(request(tmp_path))
    assert info.active
    canceled = provider.cancel_run(info.id)
    assert canceled.status == "Canceled" and not canceled.active
    assert len(fake.calls_to("POST", f"/jobs/{info.id}/cancel")) == 1
    provider.cancel_run(info.id)  # already ended: nothing sent
    assert len(fake.calls_to("POST", f"/jobs/{info.id}/cancel")) == 1


def test_mpi_and_batchai_jobs(provider: AzureV2Provider, fake: FakeV2Azure,
                              tmp_path: Path) -> None:
    provider.submit_run(request(tmp_path, distribution={
        "type": "mpi", "node_count": 3, "process_count_per_node": 2}))
    provider.submit_run(request(
        tmp_path, spec_hash="1111222233334444", compat="batchai",
        role_arguments={"ps": ["--role", "ps"],
                        "worker": ["--shard", {"datastore": "default", "path": "w"}]}))
    mpi, batchai = (put.json()["properties"] for put in job_puts(fake))
    assert mpi["distribution"] == {"distributionType": "Mpi", "processCountPerInstance": 2}
    assert mpi["resources"]["instanceCount"] == 3
    assert "python amlctl_batchai_launcher.py" in batchai["command"]
    variables = batchai["environmentVariables"]
    assert variables["AMLCTL_BATCHAI_ENTRY_SCRIPT"] == "train.py"
    role_args = json.loads(variables["AMLCTL_BATCHAI_ROLE_ARGS"])
    assert role_args == {"ps": ["--role", "ps"],
                         "worker": ["--shard", "$AZUREML_DATAREFERENCE_shard"]}
    # every input is exported under the name v1 runs and the launcher read
    assert 'export AZUREML_DATAREFERENCE_shard="${{inputs.shard}}";' in batchai["command"]
    assert batchai["inputs"]["shard"]["uri"] == "azureml://datastores/workspaceblobstore/paths/w"


def test_a_resubmission_is_a_new_job_of_its_own_name(provider: AzureV2Provider,
                                                      fake: FakeV2Azure,
                                                      tmp_path: Path) -> None:
    """`apply --replace run.X` names the run it replaces: a new job, under the name the v1
    backend would give it (the same for every runner replacing the same run)."""
    first = provider.submit_run(request(tmp_path))
    fake.set_job_status(RG, WS, first.id, "Completed")
    second = provider.submit_run(request(tmp_path, supersedes=first.id))
    assert second.id == run_id(STACK, "tf-ps", "0f1e2d3c4b5a6978", first.id) != first.id
    assert provider.submit_run(request(tmp_path, supersedes=first.id)).id == second.id
    assert len(job_puts(fake)) == 2
    assert {r.id for r in provider.list_runs(name="tf-ps")} == {first.id, second.id}


def test_experiments_are_records_and_job_names(provider: AzureV2Provider, fake: FakeV2Azure,
                                               tmp_path: Path) -> None:
    """SDK v2 has no experiment API: amlctl's record says which are the stack's (and their
    tags); a job's experiment_name shows one too; a deleted one stays hidden."""
    provider.create("experiment.tf", {"tags": {"team": "vision"}}, {})
    provider.submit_run(request(tmp_path))
    fake.add_job(RG, WS, "someone-elses-run", "notebooks", {"owner": "alice"})
    live = provider.read_all()
    assert live["experiment.tf"].owner == STACK
    assert live["experiment.tf"].attrs == {"tags": {"team": "vision"}}
    assert live["experiment.notebooks"].owner is None  # not amlctl's: never pruned
    provider.update("experiment.tf", {"tags": {}}, ["tags"], {})
    assert provider.read_all()["experiment.tf"].attrs == {"tags": {}}
    provider.delete("experiment.tf")
    assert "experiment.tf" not in provider.read_all(), "its job does not bring it back"
    provider.create("experiment.tf", {"tags": {}}, {})
    assert provider.read_all()["experiment.tf"].owner == STACK


def test_a_failed_snapshot_upload_is_an_error_not_a_hang(provider: AzureV2Provider,
                                                         fake: FakeV2Azure,
                                                         tmp_path: Path) -> None:
    """azure-ai-ml waits forever for a snapshot file whose upload failed unless its progress
    display is on (only then does it read the upload workers' results)."""
    import threading

    fake.broken_upload_sas = True  # the snapshot's storage answers 403 to every upload
    outcome: list[BaseException | None] = []

    def submit() -> None:
        try:
            provider.submit_run(request(tmp_path))
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    worker = threading.Thread(target=submit, daemon=True)
    worker.start()
    worker.join(60)
    assert not worker.is_alive(), "the submission hung on the failed upload"
    [error] = outcome
    assert isinstance(error, ProviderError), error
    assert "Server failed to authenticate" in str(error)  # storage's own words
    assert fake.job_bodies(RG, WS) == {}, "no job without its snapshot"


# logs and metrics: the real azure-ai-ml run history client against the fake's run history
# routes (fake_v2.V2RunHistory), each process's log in the workspace storage (Azurite)

def roles(lines: list[str]) -> set[str]:
    return {line.split("]")[0] + "]" for line in lines}


def test_a_finished_jobs_logs_per_role(provider: AzureV2Provider, fake: FakeV2Azure,
                                       tmp_path: Path) -> None:
    info = provider.submit_run(request(tmp_path))
    assert list(provider.run_logs(info.id)) == [], "nothing ran yet"
    fake.set_job_status(RG, WS, info.id, "Completed")
    lines = list(provider.run_logs(info.id))
    assert roles(lines) == {"[ps:0]", "[worker:0]", "[worker:1]"}
    assert f"[worker:1] worker_1: run {info.id} ended Completed" in lines
    only = list(provider.run_logs(info.id, role="ps:0"))
    assert only and all(line.startswith("[ps:0] ") for line in only)
    workers = list(provider.run_logs(info.id, role="worker"))  # a role: all its processes
    assert roles(workers) == {"[worker:0]", "[worker:1]"}
    with pytest.raises(ProviderError, match=r"no process 'chief:0'.*choose one of: ps, worker"):
        list(provider.run_logs(info.id, role="chief:0"))
    assert fake.calls_to("GET", f"/history/v1.0/subscriptions/{fake.subscription_id}")


def test_a_running_jobs_logs_so_far(provider: AzureV2Provider, fake: FakeV2Azure,
                                    tmp_path: Path) -> None:
    info = provider.submit_run(request(tmp_path))
    fake.set_job_status(RG, WS, info.id, "Running")
    lines = list(provider.run_logs(info.id))
    assert roles(lines) == {"[ps:0]", "[worker:0]", "[worker:1]"}
    assert not any("ended" in line for line in lines)


def test_follow_reads_until_the_job_ends(provider: AzureV2Provider, fake: FakeV2Azure,
                                         tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(history.time, "sleep", waits.append)
    fake.job_script = ["Queued", "Running", "Running", "Completed"]
    info = provider.submit_run(request(tmp_path))
    lines = list(provider.run_logs(info.id, follow=True))
    # each process's start line once, then its end line: no line twice across polls
    for role, proc in (("ps:0", "ps_0"), ("worker:0", "worker_0"), ("worker:1", "worker_1")):
        mine = [line for line in lines if line.startswith(f"[{role}] ")]
        assert len(mine) == 2 and "starting" in mine[0] and mine[1].endswith(
            f"{proc}: run {info.id} ended Completed"), lines
    assert fake.job_bodies(RG, WS)[info.id]["properties"]["status"] == "Completed"
    assert len(waits) == 3 and waits == sorted(waits), "polls back off until the job ended"


def test_watch_shows_each_process_of_a_parameter_server_job(
        provider: AzureV2Provider, fake: FakeV2Azure, tmp_path: Path) -> None:
    """`run_roles` (what `amlctl watch` shows): the job's declared processes while it waits,
    then each process's state and the last line of its own log file."""
    from amlctl.providers.base import RoleStatus

    info = provider.submit_run(request(tmp_path))
    details = f"/runs/{info.id}/details"
    assert provider.run_roles(info.id) == [RoleStatus("ps:0", "Queued"),
                                           RoleStatus("worker:0", "Queued"),
                                           RoleStatus("worker:1", "Queued")]
    assert not fake.calls_to("GET", details), "a job not started has no logs to read"
    fake.set_job_status(RG, WS, info.id, "Running")
    running = provider.run_roles(info.id)
    assert [(r.name, r.state) for r in running] == [
        ("ps:0", "Running"), ("worker:0", "Running"), ("worker:1", "Running")]
    for role in running:  # each process's own file: its name is in its line
        proc = role.name.replace(":", "_")
        assert role.last_line is not None and role.last_line.startswith(
            f"{proc}: starting ") and role.last_line.endswith(" on cpu"), running
    fake.set_job_status(RG, WS, info.id, "Failed")
    ended = provider.run_roles(info.id)
    assert [(r.name, r.state, r.last_line) for r in ended] == [
        (name, "Failed", f"{name.replace(':', '_')}: run {info.id} ended Failed")
        for name in ("ps:0", "worker:0", "worker:1")]
    assert provider.run_roles("nope") == []


def test_watch_shows_each_rank_of_an_mpi_job(provider: AzureV2Provider, fake: FakeV2Azure,
                                             tmp_path: Path) -> None:
    info = provider.submit_run(request(tmp_path, distribution={
        "type": "mpi", "node_count": 2, "process_count_per_node": 2}, inputs={},
        arguments=[]))
    assert [r.name for r in provider.run_roles(info.id)] == [
        "worker:0", "worker:1", "worker:2", "worker:3"]


def test_logs_of_an_unknown_job(provider: AzureV2Provider, fake: FakeV2Azure) -> None:
    with pytest.raises(ProviderError, match="no run 'nope'"):
        list(provider.run_logs("nope"))


def test_metrics_with_their_steps(provider: AzureV2Provider, fake: FakeV2Azure,
                                  tmp_path: Path) -> None:
    info = provider.submit_run(request(tmp_path))
    assert provider.run_metrics(info.id) == []
    for step, loss in ((0, 2.3), (1, 0.9), (2, 0.31)):
        fake.log_job_metric(RG, WS, info.id, "loss", loss, step)
    fake.log_job_metric(RG, WS, info.id, "accuracy", 0.97, 2)
    fake.log_job_metric(RG, WS, info.id, "diverged", math.inf, 0)
    found = {m.name: m for m in provider.run_metrics(info.id)}
    assert set(found) == {"accuracy", "diverged", "loss"}
    assert found["loss"].steps == (0, 1, 2) and found["loss"].values == (2.3, 0.9, 0.31)
    assert found["loss"].last == 0.31 and found["loss"].maximum == 2.3
    assert found["accuracy"].steps == (2,) and found["accuracy"].values == (0.97,)
    assert found["diverged"].values == (math.inf,)
    assert fake.calls_to("POST", f"/runs/{info.id}/full")
    with pytest.raises(ProviderError, match="no run 'nope'"):
        provider.run_metrics("nope")


def test_the_sdks_own_stream_reads_the_fakes_run_history(provider: AzureV2Provider,
                                                         fake: FakeV2Azure, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]
                                                         ) -> None:
    """`jobs.stream` itself, against the routes amlctl's own reading uses: the fake's run
    history answers it as the service does (rank 0's logs, then the summary)."""
    from azure.ai.ml.operations._run_history_constants import RunHistoryConstants

    monkeypatch.setattr(RunHistoryConstants, "_WAIT_COMPLETION_POLLING_INTERVAL_MIN", 0)
    monkeypatch.setattr(RunHistoryConstants, "_WAIT_COMPLETION_POLLING_INTERVAL_MAX", 0)
    fake.job_script = ["Running", "Completed"]
    info = provider.submit_run(request(tmp_path))
    capsys.readouterr()
    provider.client().jobs.stream(info.id)
    out = capsys.readouterr().out
    assert "Streaming user_logs/std_log_ps_0.txt" in out
    assert "Streaming user_logs/std_log_worker_0.txt" in out
    assert "std_log_worker_1" not in out  # the SDK streams rank 0 only
    assert f"worker_0: run {info.id} ended Completed" in out and "Execution Summary" in out
