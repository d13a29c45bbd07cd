"""Runs on the azure backend: the real SDK builds the ScriptRunConfig / RunConfiguration
offline (datastore reads go to the fake service over HTTPS), and the Batch AI launcher runs as
AML would run it. Submission through the run history service: test_azure_run_history.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION

from amlctl.manifest.models import Run
from amlctl.providers.azure import batchai_launcher as launcher
from amlctl.providers.azure.runs import LAUNCHER, build_run
from amlctl.providers.base import OWNER_TAG, SPEC_HASH_TAG, ComputeRef, RunRequest
from amlctl.runs.definition import definition_of

WORKSPACE = {"name": "ml-ws", "subscription_id": SUBSCRIPTION, "resource_group": "ml-rg",
             "location": "westeurope", "create_resource_group": False, "tags": {}}

TF_RUN = {
    "experiment": "tensorflow_experiment", "compute": "nc6", "source_directory": "src",
    "entry_script": "tf_mnist_replica.py",
    "arguments": {"--train_steps": 500,
                  "--input_data": {"datastore": "default", "path": "mnist_dataset"},
                  "--sync_replicas": None},
    "inputs": {"CIFAR": {"datastore": "default", "path": "cifar", "mode": "download"}},
    "distribution": {"type": "parameter_server", "node_count": 2, "worker_count": 2,
                     "parameter_server_count": 1},
    "environment": {"pip": ["tensorflow-cpu==2.15.0"], "env_vars": {"MODE": "fast"}},
    "tags": {"owner": "vision"},
}


@pytest.fixture
def source(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    (src / "tf_mnist_replica.py").write_text("print('training')\n")
    return src


def submitted(config: Any) -> Any:
    """The RunConfiguration the SDK derives from a ScriptRunConfig when submitting it."""
    from azureml.core.script_run_config import get_run_config_from_script_run

    return get_run_config_from_script_run(config)


def request(source: Path, run: dict[str, Any], secrets: dict[str, str] | None = None
            ) -> RunRequest:
    model = Run.model_validate(run)
    return RunRequest(name="tf-mnist", spec_hash="abc123",
                      run=definition_of(model, secrets), source_dir=source,
                      compute=ComputeRef(model.compute, max_nodes=4), secrets=secrets or {})


def test_parameter_server_run_config(workspace: Any, source: Path) -> None:
    """TensorflowConfiguration(2 workers, 1 ps) over node_count 2, inputs as references."""
    built = build_run(request(source, TF_RUN), "demo", lambda _n:
                      workspace.get_default_datastore())
    rc = submitted(built.config)
    assert (rc.framework, rc.communicator, rc.node_count) == ("TensorFlow", "ParameterServer", 2)
    assert (rc.tensorflow.worker_count, rc.tensorflow.parameter_server_count) == (2, 1)
    assert rc.target == "nc6"
    assert rc.script == "tf_mnist_replica.py"
    assert rc.arguments == ["--train_steps", "500", "--input_data",
                            "$AZUREML_DATAREFERENCE_input_data", "--sync_replicas"]
    refs = rc.data_references
    assert sorted(refs) == ["CIFAR", "input_data"]
    assert (refs["input_data"].data_store_name, refs["input_data"].mode,
            refs["input_data"].path_on_data_store) == ("workspaceblobstore", "mount",
                                                       "mnist_dataset")
    assert refs["CIFAR"].mode == "download"
    env = rc.environment
    assert "tensorflow-cpu==2.15.0" in list(env.python.conda_dependencies.pip_packages)
    assert env.environment_variables == {"MODE": "fast"}
    assert built.tags == {"owner": "vision", OWNER_TAG: "demo", SPEC_HASH_TAG: "abc123",
                          "amlctl.run": "tf-mnist"}
    assert built.staged is None


def test_multi_worker_mpi_and_command_runs(workspace: Any, source: Path) -> None:
    """multi_worker: TF without ps; mpi: MpiConfiguration; command: a shell line."""
    def ds(_name: str) -> Any:
        return workspace.get_default_datastore()

    multi = {**TF_RUN, "distribution": {"type": "multi_worker", "node_count": 3,
                                        "worker_count": 3}}
    rc = submitted(build_run(request(source, multi), "demo", ds).config)
    assert (rc.tensorflow.worker_count, rc.tensorflow.parameter_server_count,
            rc.node_count) == (3, 0, 3)
    mpi = {**TF_RUN, "distribution": {"type": "mpi", "node_count": 2,
                                      "process_count_per_node": 4}}
    rc = submitted(build_run(request(source, mpi), "demo", ds).config)
    assert (rc.communicator, rc.mpi.process_count_per_node, rc.node_count) == (
        "IntelMpi", 4, 2)
    command = {k: v for k, v in TF_RUN.items() if k != "entry_script"}
    command.update(command="python train.py", arguments=["--epochs", 3],
                   distribution={"type": "none"},
                   environment={"docker_image": "mcr.microsoft.com/azureml/base:latest"})
    rc = submitted(build_run(request(source, command), "demo", ds).config)
    assert rc.command == "python train.py --epochs 3"
    assert rc.environment.docker.base_image == "mcr.microsoft.com/azureml/base:latest"
    assert rc.node_count == 1


def test_secret_env_vars_reach_only_the_environment(workspace: Any, source: Path) -> None:
    """Secret values come from the request, not from the stored definition."""
    run = {**TF_RUN, "environment": {"env_vars": {"TOKEN": "placeholder"}}}
    built = build_run(request(source, run, {"TOKEN": "s3cret"}), "demo",
                      lambda _n: workspace.get_default_datastore())
    assert built.config.run_config.environment.environment_variables == {"TOKEN": "s3cret"}


def test_batchai_compat_ships_the_launcher(workspace: Any, source: Path) -> None:
    """The snapshot is a staged copy holding the launcher, which becomes the entry point."""
    run = {**TF_RUN, "compat": "batchai", "outputs": ["MODEL"],
           "role_arguments": {"ps": ["--job_name", "ps"], "worker": ["--job_name", "worker"]}}
    built = build_run(request(source, run), "demo", lambda _n:
                      workspace.get_default_datastore())
    try:
        rc = submitted(built.config)
        snapshot = Path(built.config.source_directory)
        assert sorted(p.name for p in snapshot.iterdir()) == [LAUNCHER, "tf_mnist_replica.py"]
        assert rc.script == LAUNCHER
        variables = rc.environment.environment_variables
        assert variables["AMLCTL_BATCHAI_ENTRY_SCRIPT"] == "tf_mnist_replica.py"
        assert variables["AMLCTL_BATCHAI_OUTPUTS"] == "MODEL"
        assert json.loads(variables["AMLCTL_BATCHAI_ROLE_ARGS"]) == {
            "ps": ["--job_name", "ps"], "worker": ["--job_name", "worker"]}
    finally:
        built.cleanup()
    assert not snapshot.exists()
    assert not (source / LAUNCHER).exists()  # the user's folder is left alone


# --- the launcher, run as Azure ML would run it ------------------------------------------------

PS_CONFIG = {"cluster": {"ps": ["10.0.0.4:2222"], "worker": ["10.0.0.5:2222", "10.0.0.6:2222"]},
             "task": {"type": "worker", "index": 1}, "environment": "cloud"}


def test_launcher_derives_batchai_variables(tmp_path: Path) -> None:
    """TF_CONFIG and data references become the AZ_BATCHAI_* variables."""
    env = {"TF_CONFIG": json.dumps(PS_CONFIG), "AZUREML_DATAREFERENCE_CIFAR": "/mnt/cifar",
           "AMLCTL_BATCHAI_OUTPUTS": "MODEL", "CUDA_VISIBLE_DEVICES": "0,1"}
    out = launcher.batchai_env(env, str(tmp_path))
    assert out["AZ_BATCHAI_PS_HOSTS"] == "10.0.0.4:2222"
    assert out["AZ_BATCHAI_WORKER_HOSTS"] == "10.0.0.5:2222,10.0.0.6:2222"
    assert out["AZ_BATCHAI_TASK_INDEX"] == "1"
    assert out["AZ_BATCHAI_INPUT_CIFAR"] == "/mnt/cifar"
    assert out["AZ_BATCHAI_OUTPUT_MODEL"] == str(tmp_path / "outputs" / "MODEL")
    assert out["AZ_BATCHAI_NUM_GPUS"] == "2"
    assert Path(out["AZ_BATCHAI_JOB_TEMP"]).is_dir()
    chief = {"cluster": {"chief": ["c:1"], "worker": ["w:1"]}, "task": {"type": "worker",
                                                                        "index": 0}}
    assert launcher.role_and_index(chief) == ("worker", 1)
    assert launcher.hosts(chief) == ([], ["c:1", "w:1"])


def test_launcher_execs_the_script_with_role_arguments(tmp_path: Path) -> None:
    """The real launcher file, in a subprocess: the script sees the variables and its role's
    extra arguments, with $AZ_BATCHAI_* references expanded."""
    shutil_copy = (Path(launcher.__file__).read_text())
    (tmp_path / LAUNCHER).write_text(shutil_copy)
    (tmp_path / "train.py").write_text(
        "import json, os, sys\n"
        "print(json.dumps({'argv': sys.argv[1:], 'ps': os.environ['AZ_BATCHAI_PS_HOSTS'],"
        " 'index': os.environ['AZ_BATCHAI_TASK_INDEX']}))\n")
    env = {**os.environ, "TF_CONFIG": json.dumps({**PS_CONFIG, "task": {"type": "ps",
                                                                        "index": 0}}),
           "AMLCTL_BATCHAI_ENTRY_SCRIPT": "train.py",
           "AMLCTL_BATCHAI_ROLE_ARGS": json.dumps({"ps": ["--job_name", "ps"],
                                                   "worker": ["--job_name", "worker"]}),
           "AZUREML_DATAREFERENCE_DATA": "/mnt/data"}
    done = subprocess.run([sys.executable, LAUNCHER, "--data", "$AZ_BATCHAI_INPUT_DATA"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == {"argv": ["--data", "/mnt/data", "--job_name", "ps"],
                                       "ps": "10.0.0.4:2222", "index": "0"}
