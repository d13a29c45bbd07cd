"""The amlctl CLI on Azure ML, the way a pipeline calls it: `python -m amlctl ...` in
subprocesses, a fresh HOME per runner, credentials from AZURE_* variables, against the fake
Azure service. Every story runs on both backends (`backend` is parametrized): `azure` runs the
real azureml SDK (v1) in each child against FakeAzure, `azure-v2` the real azure-ai-ml against
FakeV2Azure (tests/azure_v2/fake_v2.py). Only the network edge is replaced
(tests/azure/child/sitecustomize.py routes the Azure host names to the fake and refuses any
other connection).

Where the SDKs legitimately differ, the story says so through the helpers below: how a run is
submitted (v1 `POST .../snapshotrun`, v2 `PUT .../jobs/NAME`), how a cluster is scaled (v1
PATCH, v2 a PUT of the whole cluster) and how the fake holds and moves a run on. A run the
service has not started reads `Queued` on both (v2's `NotStarted` is shown as v1 names it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure

BACKENDS = ("azure", "azure-v2")
pytestmark = pytest.mark.parametrize("backend", BACKENDS)

REPO = Path(__file__).resolve().parents[2]
CHILD = Path(__file__).parent / "child"
TENANT = "72f988bf-0000-0000-0000-000000000001"
TIMEOUT_S = 120

MANIFEST = """\
version: 1
name: e2e
workspace:
  name: e2e-ws
  subscription_id: "{{ env('AZURE_SUBSCRIPTION_ID') }}"
  resource_group: e2e-rg
  location: westeurope
  create_resource_group: true
  tags: {team: vision}
computes:
  cpu:
    vm_size: VM_SIZE
    max_nodes: MAX_NODES
uploads:
  data:
    datastore: default
    src_dir: data
    target_path: data
    delete_extra: true
experiments:
  train: {}
runs:
  ps:
    experiment: train
    compute: cpu
    source_directory: src
    entry_script: train.py
    arguments: {--data: {datastore: default, path: data}, --steps: 10}
    distribution: {type: parameter_server, node_count: 2, worker_count: 2,
                   parameter_server_count: 1}
"""


@dataclass
class Done:
    """One finished amlctl process."""

    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"amlctl {' '.join(self.args)} -> {self.code}\n--- stdout\n{self.stdout}"
                f"--- stderr\n{self.stderr}")


class Runner:
    """A CI runner: its own HOME and environment; calling it runs amlctl there to the end,
    `start` launches amlctl in the background (`finish` collects it)."""

    def __init__(self, env: dict[str, str]) -> None:
        self.env = env

    def _command(self, args: tuple[str, ...], cwd: Path,
                 extra_env: dict[str, str] | None) -> dict[str, Any]:
        return {"args": [sys.executable, "-m", "amlctl", *args], "cwd": cwd,
                "env": {**self.env, **(extra_env or {})}, "stdin": subprocess.DEVNULL,
                "text": True}

    def __call__(self, *args: str, cwd: Path, extra_env: dict[str, str] | None = None) -> Done:
        proc = subprocess.run(**self._command(args, cwd, extra_env), capture_output=True,
                              timeout=TIMEOUT_S)
        return Done(args, proc.returncode, proc.stdout, proc.stderr)

    def start(self, *args: str, cwd: Path,
              extra_env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        return subprocess.Popen(**self._command(args, cwd, extra_env), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)


def finish(proc: subprocess.Popen[str]) -> Done:
    """Wait for a process `Runner.start` launched."""
    try:
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
    return Done(tuple(proc.args[3:]), proc.returncode, stdout, stderr)  # type: ignore[index]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = TIMEOUT_S) -> None:
    """Poll `condition` until it holds; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def write_project(folder: Path, vm_size: str = "Standard_D2_v2", max_nodes: int = 2) -> Path:
    """The e2e manifest with its code and data in `folder` (a checkout)."""
    folder.mkdir(parents=True, exist_ok=True)
    text = MANIFEST.replace("VM_SIZE", vm_size).replace("MAX_NODES", str(max_nodes))
    (folder / "amlctl.yaml").write_text(text)
    (folder / "src").mkdir(exist_ok=True)
    (folder / "src" / "train.py").write_text("print('training')\n")
    (folder / "data").mkdir(exist_ok=True)
    for name in ("a.csv", "b.csv"):
        (folder / "data" / name).write_text(f"{name},1\n")
    return folder


@pytest.fixture
def runner(fake: FakeAzure, azure_edge: Any, tmp_path: Path) -> Callable[[str], Runner]:
    """`runner(name)`: a CI runner with its own HOME; calling it runs amlctl there."""
    fake.add_service_principal("ci-app", "ci-secret")
    refused = tmp_path / "refused.txt"
    cert = azure_edge.env["SSL_CERT_FILE"]

    def make(name: str) -> Runner:
        home = tmp_path / f"home-{name}"
        (home / ".azure").mkdir(parents=True, exist_ok=True)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
            "AZURE_CONFIG_DIR": str(home / ".azure"), "REQUESTS_CA_BUNDLE": cert,
            "SSL_CERT_FILE": cert, "NO_PROXY": "*", "LANG": "C.UTF-8",
            "PYTHONPATH": os.pathsep.join([str(CHILD), str(REPO)]),
            "FAKE_AZURE_PORT": str(fake.port), "FAKE_AZURE_REFUSED": str(refused),
            "FAKE_AZURITE_PORT": str(azure_edge.azurite.port),
            "AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": "ci-app",
            "AZURE_CLIENT_SECRET": "ci-secret", "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
        }

        return Runner(env)

    yield make
    assert not refused.exists(), f"a child process tried to leave loopback: " \
                                 f"{refused.read_text()}"


def ok(done: Done, code: int = 0) -> Done:
    assert done.code == code, str(done)
    assert "Traceback" not in done.stderr, str(done)
    return done


def sdk_log_records(stderr: str) -> list[str]:
    """Lines an SDK's own loggers wrote (`WARNING azure.ai.ml._utils...: ...`, `ERROR
    azureml...`): they belong in `amlctl -v` output, not in a pipeline's log."""
    return [line for line in stderr.splitlines()
            if re.match(r"(WARNING|ERROR|CRITICAL) azure", line)]


def blobs_under(fake: FakeAzure, prefix: str) -> dict[str, bytes]:
    """The files under `prefix` of the workspace's default container, as the storage (Azurite)
    holds them."""
    from azureml._vendor.azure_storage.blob import BlobServiceClient

    (ws,) = fake.workspaces.values()
    account = ws.storage_account
    container = BlobServiceClient(
        f"https://{account}.blob.core.windows.net",
        credential={"account_name": account, "account_key": fake.account_keys[account]},
    ).get_container_client(f"azureml-blobstore-{ws.workspace_id}")
    return {b.name[len(prefix):]: container.download_blob(b.name).readall()
            for b in container.list_blobs(name_starts_with=prefix)}


# -- what differs between the SDKs' requests (see the module doc) --------------------------------

def submissions(fake: FakeAzure, backend: str) -> list[Any]:
    """The requests that created a run: v1 starts a snapshot run, v2 PUTs a job (answered or
    not: a PUT that failed may still have created it)."""
    if backend == "azure":
        return fake.calls_to("POST", "/snapshotrun")
    return fake.calls_to("PUT", "/jobs/")


def cluster_updates(fake: FakeAzure, backend: str, name: str) -> list[Any]:
    """The in-place updates of a cluster: v1 PATCHes it, v2 PUTs its whole definition again
    (its first PUT, the create, is not an update)."""
    if backend == "azure":
        return fake.calls_to("PATCH", f"/computes/{name}")
    return fake.calls_to("PUT", f"/computes/{name}")[1:]


def stack_runs(fake: FakeAzure, backend: str) -> dict[str, dict[str, str]]:
    """Every run of the (one) workspace, id -> tags, as the service holds them."""
    if backend == "azure":
        return {r.id: dict(r.tags) for runs in fake.history.runs.values()
                for r in runs.values()}
    (ws,) = fake.workspaces.values()
    return {name: dict(body["properties"].get("tags") or {})
            for name, body in fake.job_bodies(ws.resource_group, ws.name).items()}


def finish_run(fake: FakeAzure, backend: str, run_id: str) -> None:
    """The service moves the run to Completed (its processes have written their logs)."""
    (ws,) = fake.workspaces.values()
    if backend == "azure":
        fake.history.set_status(ws, run_id, "Completed")
    else:
        fake.set_job_status(ws.resource_group, ws.name, run_id, "Completed")  # type: ignore[attr-defined]


def hold_runs(fake: FakeAzure, backend: str) -> None:
    """Runs stay not started until the test moves them (a v2 job does so by default)."""
    if backend == "azure":
        fake.history.hold_runs = True


def test_a_pipeline_takes_a_stack_through_its_life(fake: FakeAzure, backend: str,
                                                   runner: Callable[[str], Runner],
                                                   tmp_path: Path) -> None:
    """validate, plan (--out, --json, markdown), apply of a new workspace (stderr free of the
    SDK's noise), no-op plan, scale in place, replace, upload add/change/delete, a
    parameter-server run, runs, logs per role, status, destroy."""
    hold_runs(fake, backend)  # the run stays queued until the test moves it
    amlctl = runner("a")
    checkout = write_project(tmp_path / "checkout-a")

    ok(amlctl("--backend", backend, "validate", cwd=checkout))
    text = ok(amlctl("--backend", backend, "plan", "--out", "first.plan", "--detailed-exitcode",
                     cwd=checkout), code=2).stdout
    assert "resource group 'e2e-rg' does not exist either: both are created" in text
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in text
    if backend == "azure":  # the other formats render the same plan data on every backend
        as_json = json.loads(ok(amlctl("--backend", backend, "plan", "--json",
                                       cwd=checkout)).stdout)
        assert {c["address"] for c in as_json["resource_changes"]} >= {
            "workspace", "compute.cpu", "upload.data", "experiment.train", "run.ps"}
        markdown = ok(amlctl("--backend", backend, "plan", "--format", "markdown",
                             cwd=checkout)).stdout
        assert "compute.cpu" in markdown and "|" in markdown

    applied = ok(amlctl("--backend", backend, "apply", "first.plan", cwd=checkout))
    assert "Apply complete" in applied.stdout
    assert "get_workspace error" not in applied.stderr
    assert not sdk_log_records(applied.stderr), applied.stderr
    # nor the SDK's Python warnings (v1 warns that it creates the resource group)
    assert "Warning" not in applied.stderr and "resource group" not in applied.stderr, \
        applied.stderr
    assert ("e2e-rg", "e2e-ws") in fake.workspaces
    (ws,) = fake.workspaces.values()
    assert ws.computes["cpu"]["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 2
    assert blobs_under(fake, "data/") == {"a.csv": b"a.csv,1\n", "b.csv": b"b.csv,1\n"}
    (start,) = submissions(fake, backend)
    if backend == "azure":
        assert start.json()["Configuration"]["tensorflow"] == {"workerCount": 2,
                                                               "parameterServerCount": 1}
    else:
        job = start.json()["properties"]
        assert job["distribution"] == {"distributionType": "TensorFlow", "workerCount": 2,
                                       "parameterServerCount": 1}
        assert job["resources"]["instanceCount"] == 2

    ok(amlctl("--backend", backend, "plan", "--detailed-exitcode", cwd=checkout))

    # scale in place
    write_project(checkout, max_nodes=3)
    plan = ok(amlctl("--backend", backend, "plan", cwd=checkout)).stdout
    assert "~ compute.cpu" in plan and "Plan: 0 to add, 1 to change, 0 to destroy." in plan
    ok(amlctl("--backend", backend, "apply", "--auto-approve", cwd=checkout))
    assert ws.computes["cpu"]["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 3
    assert len(cluster_updates(fake, backend, "cpu")) == 1
    assert not fake.calls_to("DELETE", "/computes/cpu")

    # replace: the VM size cannot change in place
    write_project(checkout, vm_size="Standard_D3_v2", max_nodes=3)
    plan = ok(amlctl("--backend", backend, "plan", cwd=checkout)).stdout
    assert "-/+ compute.cpu" in plan
    # the queued run would lose its cluster: a pipeline must say so explicitly
    refused = ok(amlctl("--backend", backend, "apply", "--auto-approve", cwd=checkout), code=1)
    assert "active runs" in refused.stderr and "--cancel-runs" in refused.stderr
    assert not fake.calls_to("DELETE", "/computes/cpu")
    ok(amlctl("--backend", backend, "apply", "--auto-approve", "--cancel-runs", cwd=checkout))
    assert ws.computes["cpu"]["properties"]["properties"]["vmSize"] == "Standard_D3_v2"
    assert len(fake.calls_to("DELETE", "/computes/cpu")) == 1

    # uploads: add, change, delete
    (checkout / "data" / "c.csv").write_text("c,3\n")
    (checkout / "data" / "a.csv").write_text("a,changed\n")
    (checkout / "data" / "b.csv").unlink()
    ok(amlctl("--backend", backend, "apply", "--auto-approve", cwd=checkout))
    assert blobs_under(fake, "data/") == {"a.csv": b"a,changed\n", "c.csv": b"c,3\n"}
    ok(amlctl("--backend", backend, "plan", "--detailed-exitcode", cwd=checkout))

    # the run, its logs per role, status
    listed = json.loads(ok(amlctl("--backend", backend, "runs", "--json", cwd=checkout)).stdout)
    assert [(r["name"], r["status"]) for r in listed] == [("ps", "Queued")]
    finish_run(fake, backend, listed[0]["id"])
    logs = ok(amlctl("--backend", backend, "logs", "run.ps", "--role", "ps:0",
                     cwd=checkout)).stdout.splitlines()
    assert logs and all(line.startswith("[ps:0] ") for line in logs)
    everything = ok(amlctl("--backend", backend, "logs", "run.ps", cwd=checkout)).stdout
    assert {line.split("]")[0] + "]" for line in everything.splitlines()} == {
        "[ps:0]", "[worker:0]", "[worker:1]"}
    status = ok(amlctl("--backend", backend, "status", cwd=checkout)).stdout
    assert "cpu" in status and "Completed" in status

    # destroy: cluster, upload record, experiment; the workspace stays
    ok(amlctl("--backend", backend, "destroy", "--auto-approve", cwd=checkout))
    assert ws.computes == {}
    assert ("e2e-rg", "e2e-ws") in fake.workspaces
    after = ok(amlctl("--backend", backend, "plan", cwd=checkout)).stdout
    assert "compute.cpu" in after
    ok(amlctl("--backend", backend, "destroy", "--auto-approve", "--include-workspace",
              cwd=checkout))
    assert fake.workspaces == {}
    assert len([c for c in fake.calls_to("DELETE", "/workspaces/e2e-ws")
                if c.path.endswith("/workspaces/e2e-ws")]) == 1


def test_a_plan_file_made_in_one_checkout_applies_in_another(fake: FakeAzure, backend: str,
                                                             runner: Callable[[str], Runner],
                                                             tmp_path: Path) -> None:
    """Job A plans into a file (an artifact); job B, another runner with the same commit
    checked out elsewhere, applies that file with its own checkout."""
    planner_job, apply_job = runner("plan-job"), runner("apply-job")
    first = write_project(tmp_path / "job-a" / "repo")
    second = tmp_path / "job-b" / "work" / "repo"
    shutil.copytree(first, second)
    planned = ok(planner_job("--backend", backend, "plan", "--out",
                             str(tmp_path / "artifact.plan"), cwd=first))
    assert "5 to add" in planned.stdout
    (first / "data" / "a.csv").write_text("only in job A's checkout\n")
    applied = ok(apply_job("apply", str(tmp_path / "artifact.plan"), cwd=second))
    assert "Apply complete" in applied.stdout
    assert "cpu" in fake.workspaces[("e2e-rg", "e2e-ws")].computes
    assert blobs_under(fake, "data/")["a.csv"] == b"a.csv,1\n"  # B's files were uploaded
    ok(apply_job("--backend", backend, "plan", "--detailed-exitcode", cwd=second))


def test_a_workspace_name_typo_is_named_in_the_plan(fake: FakeAzure, backend: str,
                                                    runner: Callable[[str], Runner],
                                                    tmp_path: Path) -> None:
    """The resource group exists, the workspace does not: the plan says a NEW workspace will
    be created and which ones exist; none of the SDK's own log lines reach stderr."""
    fake.add_workspace("e2e-rg", "e2e-wks")
    checkout = write_project(tmp_path / "repo")
    done = ok(runner("a")("--backend", backend, "plan", cwd=checkout))
    assert ("workspace 'e2e-ws' does not exist in resource group 'e2e-rg': a NEW workspace "
            "will be created") in done.stdout
    assert "did you mean 'e2e-wks'?" in done.stdout
    assert done.stderr == "", done.stderr


def test_the_mnist_example_plans_against_an_empty_subscription(
        fake: FakeAzure, backend: str, runner: Callable[[str], Runner], tmp_path: Path) -> None:
    """The quickstart (examples/mnist, `backend: local` in its file) planned for Azure with
    `--backend`: everything is to be created, nothing is written."""
    checkout = tmp_path / "mnist"
    shutil.copytree(REPO / "examples" / "mnist", checkout)
    done = ok(runner("a")("--backend", backend, "plan", "--detailed-exitcode", cwd=checkout),
              code=2)
    assert "resource group 'mnist-rg' does not exist either: both are created" in done.stdout
    for address in ("workspace", "compute.cpu-cluster", "upload.mnist",
                    "experiment.tensorflow_experiment", "run.tf-mnist"):
        assert f"+ {address}" in done.stdout, done.stdout
    assert "Plan: 5 to add, 0 to change, 0 to destroy." in done.stdout
    assert done.stderr == "", done.stderr
    assert fake.workspaces == {} and not [c for c in fake.calls if c.method != "GET"
                                          and "/oauth2/" not in c.path]


def test_a_500_after_the_run_was_created_still_leaves_one_tagged_run(
        fake: FakeAzure, backend: str, runner: Callable[[str], Runner], tmp_path: Path) -> None:
    """The service fails after the run was created (v1: the tag write after the start; v2:
    the job's PUT itself answers 500 although the job exists): apply finds the run by its
    id, reports it, and neither this apply nor the next starts a second one."""
    amlctl = runner("a")
    checkout = write_project(tmp_path / "repo")
    if backend == "azure":
        fake.fail_next("PATCH", "/runs/", 500)
    else:
        fake.fail_after_job_create = 1  # type: ignore[attr-defined]
    applied = ok(amlctl("--backend", backend, "apply", "--auto-approve", cwd=checkout))
    assert "Apply complete. Resources: 5 added" in applied.stdout
    assert len(submissions(fake, backend)) == 1
    if backend == "azure":
        assert not fake.failures[0].times  # the failure did happen
    else:
        assert fake.fail_after_job_create == 0  # type: ignore[attr-defined]
        assert [c.status for c in fake.calls_to("PUT", "/jobs/")] == [500]
    runs = stack_runs(fake, backend)
    (run_id,) = runs
    assert runs[run_id]["amlctl.stack"] == "e2e"
    assert run_id in applied.stdout
    ok(amlctl("--backend", backend, "apply", "--auto-approve", cwd=checkout))
    assert len(submissions(fake, backend)) == 1
    assert list(stack_runs(fake, backend)) == [run_id]
    listed = json.loads(ok(amlctl("--backend", backend, "runs", "--json", cwd=checkout)).stdout)
    assert [r["id"] for r in listed] == [run_id]


def test_another_runner_sees_no_changes_then_drift_behind_our_back(
        fake: FakeAzure, backend: str, runner: Callable[[str], Runner], tmp_path: Path) -> None:
    """Runner A applies; runner B (fresh HOME, the same commit checked out at another path,
    no local state) reads everything back from Azure: no changes, no second run. Then someone
    scales the cluster in the portal: B reports it as changed outside amlctl and plans it
    back."""
    first = write_project(tmp_path / "a" / "repo")
    ok(runner("a")("--backend", backend, "apply", "--auto-approve", cwd=first))
    second = tmp_path / "b" / "build" / "repo"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns(".amlctl"))
    other = runner("b")
    planned = ok(other("--backend", backend, "plan", "--detailed-exitcode", cwd=second))
    assert "No changes." in planned.stdout
    ok(other("--backend", backend, "apply", "--auto-approve", cwd=second))
    assert len(submissions(fake, backend)) == 1

    (ws,) = fake.workspaces.values()
    with fake.lock:  # the portal's edit
        ws.computes["cpu"]["properties"]["properties"]["scaleSettings"]["maxNodeCount"] = 5
    drifted = ok(other("--backend", backend, "plan", "--detailed-exitcode", cwd=second),
                 code=2).stdout
    assert "objects changed outside amlctl since it last applied them" in drifted
    drift = drifted.split("changed outside amlctl", 1)[1].split("\n\n", 2)[1]
    assert "~ compute.cpu" in drift and "5" in drift, drifted
    assert "~ compute.cpu" in drifted.split("changed outside amlctl", 1)[1].split("\n\n", 2)[2]
    assert "Plan: 0 to add, 1 to change, 0 to destroy." in drifted


def test_two_runners_applying_at_once_one_proceeds(fake: FakeAzure, backend: str,
                                                   runner: Callable[[str], Runner],
                                                   tmp_path: Path) -> None:
    """A and B apply the same commit at once: while A is inside its apply (its cluster
    update held by the fake), B fails naming A's lock; B with --lock-timeout waits for A and
    then has nothing left to do."""
    first = write_project(tmp_path / "a" / "repo")
    a, b = runner("a"), runner("b")
    ok(a("--backend", backend, "apply", "--auto-approve", cwd=first))
    write_project(first, max_nodes=4)  # the new commit
    second = tmp_path / "b" / "build" / "repo"
    shutil.copytree(first, second, ignore=shutil.ignore_patterns(".amlctl"))

    # the scale update (v1 PATCHes the cluster, v2 PUTs it again)
    held = fake.hold_next("PATCH" if backend == "azure" else "PUT", "/computes/cpu")
    applying = a.start("--backend", backend, "apply", "--auto-approve", cwd=first)
    try:
        assert held.reached.wait(TIMEOUT_S), "A never reached its cluster update"
        refused = b("--backend", backend, "apply", "--auto-approve", cwd=second)
        assert refused.code == 1 and "Traceback" not in refused.stderr, str(refused)
        assert "the stack is locked: lock " in refused.stderr
        assert "held by amlctl apply (pid " in refused.stderr, str(refused)
        assert f"(pid {applying.pid} " in refused.stderr, str(refused)

        trace = tmp_path / "b-trace.txt"
        waiting = b.start("--backend", backend, "apply", "--auto-approve", "--lock-timeout",
                          "100", cwd=second, extra_env={"FAKE_AZURE_TRACE": str(trace)})
        # B's first refused lease request: it is waiting on A now
        wait_for(lambda: trace.exists() and any(
            "comp=lease" in line and line.endswith("-> 409")
            for line in trace.read_text().splitlines()), "B to find the stack locked")
        assert waiting.poll() is None
    finally:
        held.release.set()
    done_a = ok(finish(applying))
    assert "Apply complete. Resources: 0 added, 1 changed, 0 destroyed." in done_a.stdout
    done_b = ok(finish(waiting))
    assert "No changes." in done_b.stdout and "Nothing to do" in done_b.stdout, str(done_b)
    (ws,) = fake.workspaces.values()
    assert ws.computes["cpu"]["properties"]["properties"]["scaleSettings"]["maxNodeCount"] == 4
    assert len(cluster_updates(fake, backend, "cpu")) == 1  # A's update only


def test_runs_lists_every_run_of_the_stack_even_outside_the_manifest(
        fake: FakeAzure, backend: str, runner: Callable[[str], Runner], tmp_path: Path) -> None:
    """`amlctl runs` finds runs by the stack's tag in every experiment of the workspace: a run
    the manifest does not name (in an experiment it does not name either) is listed; a run
    without the tag, or another stack's, is not."""
    import dataclasses

    hold_runs(fake, backend)
    amlctl = runner("a")
    checkout = write_project(tmp_path / "repo")
    ok(amlctl("--backend", backend, "apply", "--auto-approve", cwd=checkout))
    (ws,) = fake.workspaces.values()
    ((ours, our_tags),) = stack_runs(fake, backend).items()
    others = (("stray_run_1", {**our_tags, "amlctl.run": "old-sweep"}),
              ("manual_run_1", {}),
              ("other_stack_1", {**our_tags, "amlctl.stack": "other"}))
    with fake.lock:  # runs someone else started, in an experiment of their own
        if backend == "azure":
            (runs,) = fake.history.runs.values()
            scratch = fake.history.add_experiment(ws, "scratch")
            for run_id, tags in others:
                runs[run_id] = dataclasses.replace(runs[ours], id=run_id, experiment=scratch,
                                                   tags=tags)
        else:
            for run_id, tags in others:
                fake.add_job(ws.resource_group, ws.name, run_id,  # type: ignore[attr-defined]
                             "scratch", tags, compute="cpu")
    listed = json.loads(ok(amlctl("--backend", backend, "runs", "--json", cwd=checkout)).stdout)
    assert sorted((r["id"], r["name"], r["experiment"]) for r in listed) == sorted([
        (ours, "ps", "train"), ("stray_run_1", "old-sweep", "scratch")])
