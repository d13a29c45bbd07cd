"""A run's logs and metrics on the azure-v2 backend, the way a pipeline reads them: `python -m
amlctl --backend azure-v2 ...` in subprocesses (fresh HOME, a service principal from AZURE_*
variables) against the fake edge. The real azure-ai-ml runs in each child; only the network
edge is replaced (tests/azure/child/sitecustomize.py routes the Azure host names to the fake
and blob hosts to Azurite, and refuses any other connection)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from fake_v2 import FakeV2Azure
from v2_support import SUBSCRIPTION

from amlctl.providers.base import OWNER_TAG

REPO = Path(__file__).resolve().parents[2]
CHILD = REPO / "tests" / "azure" / "child"
TENANT = "72f988bf-0000-0000-0000-000000000001"
RG, WS = "cli-rg", "cli-ws"

MANIFEST = f"""\
version: 1
name: cli
workspace:
  name: {WS}
  subscription_id: "{{{{ env('AZURE_SUBSCRIPTION_ID') }}}}"
  resource_group: {RG}
  location: westeurope
computes:
  cpu: {{vm_size: Standard_D2_v2, max_nodes: 2}}
experiments:
  train: {{}}
runs:
  ps:
    experiment: train
    compute: cpu
    source_directory: src
    entry_script: train.py
    arguments: [--steps, 10]
    distribution: {{type: parameter_server, node_count: 2, worker_count: 2,
                   parameter_server_count: 1}}
"""


def test_logs_follow_and_metrics_of_a_run(fake: FakeV2Azure, azure_v2_edge: Any,
                                          tmp_path: Path) -> None:
    fake.add_workspace(RG, WS, tags={OWNER_TAG: "cli"})
    fake.add_service_principal("ci-app", "ci-secret")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.py").write_text("print('training')\n")
    (tmp_path / "amlctl.yaml").write_text(MANIFEST)
    home, refused = tmp_path / "home", tmp_path / "refused.txt"
    (home / ".azure").mkdir(parents=True)
    cert = azure_v2_edge.env["SSL_CERT_FILE"]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
           "AZURE_CONFIG_DIR": str(home / ".azure"), "REQUESTS_CA_BUNDLE": cert,
           "SSL_CERT_FILE": cert, "NO_PROXY": "*", "LANG": "C.UTF-8",
           "PYTHONPATH": os.pathsep.join([str(CHILD), str(REPO)]),
           "FAKE_AZURE_PORT": str(fake.port), "FAKE_AZURE_REFUSED": str(refused),
           "FAKE_AZURITE_PORT": str(azure_v2_edge.azurite.port),
           "AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": "ci-app",
           "AZURE_CLIENT_SECRET": "ci-secret", "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION}

    def amlctl(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "amlctl", "--backend", "azure-v2", *args],
                              cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=180, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, \
            f"amlctl {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        return proc.stdout

    # the job runs as it is followed: each poll of its details moves it one step
    fake.job_script = ["Running", "Running", "Completed"]
    amlctl("apply", "--auto-approve")
    [job] = fake.job_bodies(RG, WS)
    followed = amlctl("logs", "run.ps", "--follow").splitlines()
    # (each details read moves the job on: the role-picked follow below reads it ended)
    assert amlctl("logs", "run.ps", "--follow", "--role", "ps").splitlines() == [
        line for line in followed if line.startswith("[ps:0] ")]
    assert fake.job_bodies(RG, WS)[job]["properties"]["status"] == "Completed"
    for role, proc in (("ps:0", "ps_0"), ("worker:0", "worker_0"), ("worker:1", "worker_1")):
        mine = [line for line in followed if line.startswith(f"[{role}] ")]
        assert len(mine) == 2, followed  # no line twice across polls
        assert "starting" in mine[0] and mine[1] == f"[{role}] {proc}: run {job} ended Completed"

    # a finished job's logs, all of them and one role's
    everything = amlctl("logs", "run.ps").splitlines()
    assert sorted(everything) == sorted(followed)
    only = amlctl("logs", "run.ps", "--role", "worker:1").splitlines()
    assert only == [line for line in everything if line.startswith("[worker:1] ")]

    # watch (piped: plain lines) names each process, as its log file does
    watched = amlctl("watch", "run.ps", "--interval", "0.1").splitlines()
    assert "ps:0 Completed, worker:0 Completed, worker:1 Completed" in watched[0], watched
    assert watched[-1] == f"Run {job}: Completed"

    for step, loss in enumerate((2.3, 0.8, 0.2)):
        fake.log_job_metric(RG, WS, job, "loss", loss, step)
    fake.log_job_metric(RG, WS, job, "accuracy", 0.93, 2)
    shown = json.loads(amlctl("metrics", "run.ps", "--json"))
    assert shown["run"] == job
    assert shown["metrics"]["loss"]["points"] == [[0, 2.3], [1, 0.8], [2, 0.2]]
    assert shown["metrics"]["loss"]["min"] == 0.2 and shown["metrics"]["loss"]["max"] == 2.3
    assert shown["metrics"]["accuracy"]["last"] == 0.93
    assert not refused.exists(), refused.read_text()
