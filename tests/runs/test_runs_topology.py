"""Task placement, TF_CONFIG and the variables each task gets, checked on real runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amlctl.providers.local.runs import status
from amlctl.providers.local.runs.spec import DistributionSpec
from amlctl.providers.local.runs.topology import expand, layout
from tests.runs.conftest import RunEnv

PS_STARTED = "outputs/ps_0.json"  # workers wait for it: the ps must not be stopped unseen
PS_2_NODES = {"type": "parameter_server", "node_count": 2, "worker_count": 2,
              "parameter_server_count": 1}


def test_layout_deals_roles_round_robin_over_nodes() -> None:
    tasks = layout(DistributionSpec("parameter_server", node_count=2, worker_count=4,
                                    parameter_server_count=1))
    assert [(t.name, t.node) for t in tasks] == [
        ("ps:0", 0), ("worker:0", 1), ("worker:1", 0), ("worker:2", 1), ("worker:3", 0)]
    assert layout(DistributionSpec("parameter_server", 2, 4, 1)) == tasks  # deterministic
    mpi = layout(DistributionSpec("mpi", node_count=2, process_count_per_node=3))
    assert [(t.index, t.node, t.local_rank) for t in mpi] == [
        (0, 0, 0), (1, 0, 1), (2, 0, 2), (3, 1, 0), (4, 1, 1), (5, 1, 2)]
    assert [t.name for t in layout(DistributionSpec())] == ["worker:0"]


def test_expand_replaces_only_the_runs_own_variables() -> None:
    variables = {"AZ_BATCHAI_TASK_INDEX": "1", "AZUREML_DATAREFERENCE_d": "/data"}
    assert expand("--task_index=$AZ_BATCHAI_TASK_INDEX", variables) == "--task_index=1"
    assert expand("${AZUREML_DATAREFERENCE_d}/x", variables) == "/data/x"
    assert expand("$HOME/$NOT_SET", variables) == "$HOME/$NOT_SET"


def test_parameter_server_tf_config_matches_azure_ml(env: RunEnv) -> None:
    row = env.submit(distribution=PS_2_NODES,
                     arguments={"--steps": 3, "--wait-file": PS_STARTED})
    final = env.wait(row)
    assert final.status == status.COMPLETED, final.error
    records = env.records(final, 3)
    assert sorted(records) == ["ps:0", "worker:0", "worker:1"]
    configs = {name: json.loads(r["env"]["TF_CONFIG"]) for name, r in records.items()}
    cluster = configs["ps:0"]["cluster"]
    assert list(cluster) == ["ps", "worker"]
    assert len(cluster["ps"]) == 1 and len(cluster["worker"]) == 2
    addresses = cluster["ps"] + cluster["worker"]
    assert all(a.startswith("127.0.0.1:") for a in addresses)
    assert len({a.split(":")[1] for a in addresses}) == 3  # a distinct port per task
    for name, config in configs.items():
        role, index = name.split(":")
        assert config == {"cluster": cluster, "task": {"type": role, "index": int(index)},
                          "environment": "cloud"}
        assert list(config) == ["cluster", "task", "environment"]
        # one argument list for every role
        assert records[name]["argv"] == ["--steps", "3", "--wait-file", PS_STARTED]
        assert records[name]["env"]["PYTHONUNBUFFERED"] == "1"
        assert records[name]["env"]["AZUREML_RUN_ID"] == row.id
        assert records[name]["env"]["AZUREML_ARM_SUBSCRIPTION"] == "sub-1"
        assert records[name]["env"]["AZUREML_ARM_RESOURCEGROUP"] == "rg-1"
        assert records[name]["env"]["AZUREML_ARM_WORKSPACE_NAME"] == "ws-1"
        assert records[name]["env"]["AZUREML_ARM_PROJECT_NAME"] == "exp"
        assert Path(records[name]["cwd"]).resolve() == Path(final.run_dir, "snapshot")
    placed = json.loads(Path(final.run_dir, "tasks.json").read_text())["tasks"]
    assert {(t["role"], t["index"], t["node"]) for t in placed} == {
        ("ps", 0, 0), ("worker", 0, 1), ("worker", 1, 0)}


def test_multi_worker_has_no_ps_and_single_process_no_tf_config(env: RunEnv) -> None:
    multi = env.submit("multi", distribution={"type": "multi_worker", "node_count": 2,
                                              "worker_count": 2})
    single = env.submit("single")
    assert env.wait(multi).status == status.COMPLETED
    assert env.wait(single).status == status.COMPLETED
    config = json.loads(env.records(multi, 2)["worker:1"]["env"]["TF_CONFIG"])
    assert list(config["cluster"]) == ["worker"] and len(config["cluster"]["worker"]) == 2
    assert config["task"] == {"type": "worker", "index": 1}
    assert "TF_CONFIG" not in env.records(single, 1)["worker:0"]["env"]


def test_mpi_tasks_know_their_rank(env: RunEnv) -> None:
    row = env.submit(distribution={"type": "mpi", "node_count": 2, "process_count_per_node": 2})
    assert env.wait(row).status == status.COMPLETED
    records = env.records(row, 4)
    assert sorted(records) == ["worker:0", "worker:1", "worker:2", "worker:3"]
    rank3 = records["worker:3"]["env"]
    assert (rank3["OMPI_COMM_WORLD_RANK"], rank3["OMPI_COMM_WORLD_SIZE"],
            rank3["OMPI_COMM_WORLD_LOCAL_RANK"], rank3["OMPI_COMM_WORLD_NODE_RANK"]) == (
        "3", "4", "1", "1")
    assert rank3["AZ_BATCHAI_MPI_MASTER_NODE"] == "127.0.0.1"


def test_batchai_compat_variables(env: RunEnv) -> None:
    row = env.submit(
        distribution=PS_2_NODES, compat="batchai", outputs=["MODEL"],
        inputs={"DATASET": {"datastore": "default", "path": "mnist"}},
        arguments=["--data=$AZ_BATCHAI_INPUT_DATASET", "--wait-file", PS_STARTED],
        role_arguments={"ps": ["--job_name=ps"],
                        "worker": ["--job_name=worker", "--task_index=$AZ_BATCHAI_TASK_INDEX"]})
    final = env.wait(row)
    assert final.status == status.COMPLETED, final.error
    records = env.records(final, 3)
    config = json.loads(records["worker:1"]["env"]["TF_CONFIG"])["cluster"]
    run_dir = Path(final.run_dir)
    for name, record in records.items():
        e = record["env"]
        assert e["AZ_BATCHAI_PS_HOSTS"] == ",".join(config["ps"])
        assert e["AZ_BATCHAI_WORKER_HOSTS"] == ",".join(config["worker"])
        assert e["AZ_BATCHAI_TASK_INDEX"] == name.split(":")[1]
        assert e["AZ_BATCHAI_NUM_GPUS"] == "0"
        assert e["AZ_BATCHAI_INPUT_DATASET"] == str(env.datastore / "mnist")
        assert e["AZUREML_DATAREFERENCE_DATASET"] == str(env.datastore / "mnist")
        assert e["AZ_BATCHAI_OUTPUT_MODEL"] == str(run_dir / "outputs" / "MODEL")
        assert Path(e["AZ_BATCHAI_JOB_TEMP"]).is_dir()
    assert (run_dir / "outputs" / "MODEL").is_dir()
    # tasks on one node share its temp folder; the two nodes have different ones
    temps = {n: r["env"]["AZ_BATCHAI_JOB_TEMP"] for n, r in records.items()}
    assert temps["ps:0"] == temps["worker:1"] != temps["worker:0"]
    common = [f"--data={env.datastore / 'mnist'}", "--wait-file", PS_STARTED]
    assert records["ps:0"]["argv"] == [*common, "--job_name=ps"]
    assert records["worker:1"]["argv"] == [*common, "--job_name=worker", "--task_index=1"]


def test_mount_is_the_datastore_folder_and_download_a_private_copy(env: RunEnv) -> None:
    row = env.submit(arguments={
        "--mounted": {"datastore": "default", "path": "mnist", "mode": "mount"},
        "--copied": {"datastore": "default", "path": "mnist", "mode": "download"},
        "--one_file": {"datastore": "default", "path": "mnist/digits.txt",
                       "mode": "download"},
    })
    final = env.wait(row)
    assert final.status == status.COMPLETED, final.error
    e = env.records(final, 1)["worker:0"]["env"]
    mounted, copied = Path(e["AZUREML_DATAREFERENCE_mounted"]), Path(
        e["AZUREML_DATAREFERENCE_copied"])
    assert mounted == env.datastore / "mnist"
    assert copied == Path(final.run_dir) / "inputs" / "copied"
    assert (copied / "digits.txt").read_text() == "0123456789\n"
    one = Path(e["AZUREML_DATAREFERENCE_one_file"])
    assert one.parent.parent == Path(final.run_dir) / "inputs" and one.read_text()
    (copied / "digits.txt").write_text("changed")
    assert (env.datastore / "mnist" / "digits.txt").read_text() == "0123456789\n"


def test_a_missing_input_fails_the_run_in_preparation(env: RunEnv) -> None:
    row = env.submit(arguments={"--d": {"datastore": "default", "path": "absent"}})
    final = env.wait(row)
    assert final.status == status.FAILED
    assert "input d: datastore 'default' has no path 'absent'" in (final.error or "")
    assert final.started_at is None


@pytest.mark.parametrize("mode", ["mount", "download"])
def test_an_input_through_a_link_in_the_datastore_fails_the_run(env: RunEnv, mode: str
                                                                ) -> None:
    outside = env.tmp / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "sub" / "secret.txt").write_text("not the datastore's")
    (env.datastore / "evil").symlink_to(outside)
    row = env.submit(arguments={"--d": {"datastore": "default", "path": "evil/sub",
                                        "mode": mode}})
    final = env.wait(row)
    assert final.status == status.FAILED
    assert "input d: evil in datastore 'default' is a symbolic link" in (final.error or "")
    assert not (Path(final.run_dir) / "inputs" / "d").exists()
    assert not list(Path(final.run_dir, "outputs").glob("*.json"))  # no task started
