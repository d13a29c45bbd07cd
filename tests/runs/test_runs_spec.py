"""Building a RunSpec from a manifest run: arguments, input ids, secrets, storage form."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from amlctl.manifest.models import Run
from amlctl.providers.local.runs.spec import RunSpec, build_spec
from amlctl.providers.local.store import WorkspaceRow
from amlctl.runs.errors import RunError

WS = WorkspaceRow(7, "sub", "rg", "ws", "westeurope", {}, None)
DIRS = {"default": Path("/data/default"), "images": Path("/data/images")}


def spec_of(**fields: object) -> RunSpec:
    run = Run.model_validate({"experiment": "exp", "compute": "cpu",
                              "source_directory": "src", "entry_script": "train.py", **fields})
    return build_spec("tf", run, workspace=WS, max_nodes=2, datastore_dirs=DIRS,
                      secrets={"API_KEY": "s3cret"} if "environment" in fields else None)


def test_flag_map_becomes_an_argument_list_with_symbolic_inputs() -> None:
    spec = spec_of(arguments={
        "--train_steps": 500,
        "--input_data": {"datastore": "default", "path": "mnist_dataset", "mode": "mount"},
        "--flag": None,
        "--rate": 0.5,
    })
    assert spec.arguments == ("--train_steps", "500", "--input_data",
                              "$AZUREML_DATAREFERENCE_input_data", "--flag", "--rate", "0.5")
    assert spec.inputs["input_data"].source == Path("/data/default/mnist_dataset")
    assert spec.inputs["input_data"].mode == "mount"


def test_a_data_input_in_a_list_stays_one_item() -> None:
    spec = spec_of(arguments=["--data-dir", {"datastore": "images", "path": "train"}, "-v",
                              {"datastore": "images", "path": "val", "mode": "download"}])
    assert spec.arguments == ("--data-dir", "$AZUREML_DATAREFERENCE_data_dir", "-v",
                              "$AZUREML_DATAREFERENCE_v")
    assert spec.inputs["v"].mode == "download"


def test_input_ids_are_shared_by_equal_inputs_and_distinct_otherwise() -> None:
    same = {"datastore": "default", "path": "a"}
    spec = spec_of(inputs={"input": {"datastore": "default", "path": "named"}},
                   arguments=[same, same, {"datastore": "default", "path": "b"}])
    assert spec.arguments == ("$AZUREML_DATAREFERENCE_input_2",
                              "$AZUREML_DATAREFERENCE_input_2",
                              "$AZUREML_DATAREFERENCE_input_3")
    assert spec.inputs["input"].path == "named"


def test_role_arguments_are_kept_per_role_after_the_common_ones() -> None:
    spec = spec_of(arguments=["--steps", 10], compat="batchai",
                   role_arguments={"ps": ["--job_name=ps"], "worker": ["--job_name=worker"]})
    assert spec.role_args("ps") == ("--steps", "10", "--job_name=ps")
    assert spec.role_args("worker") == ("--steps", "10", "--job_name=worker")


def test_distribution_defaults_and_counts() -> None:
    assert spec_of().distribution.type == "none"
    ps = spec_of(distribution={"type": "parameter_server", "node_count": 2, "worker_count": 3})
    assert (ps.distribution.node_count, ps.distribution.worker_count,
            ps.distribution.parameter_server_count) == (2, 3, 1)
    mpi = spec_of(distribution={"type": "mpi", "node_count": 2, "process_count_per_node": 2})
    assert mpi.distribution.process_count_per_node == 2


def test_stored_form_is_json_round_trips_and_holds_no_secret() -> None:
    spec = spec_of(environment={"pip": ["numpy"], "docker_image": "tf:latest",
                                "env_vars": {"MODE": "fast", "API_KEY": SecretStr("s3cret")}})
    text = json.dumps(spec.to_dict())
    assert "s3cret" not in text
    back = RunSpec.from_dict(json.loads(text))
    assert back == spec
    assert back.environment.env_vars == {"MODE": "fast"}
    assert back.environment.secret_env_vars == ("API_KEY",)
    assert spec.secrets == {"API_KEY": "s3cret"}


def test_definition_leaves_out_ids_folders_and_machine_paths() -> None:
    spec = spec_of(arguments={"--d": {"datastore": "default", "path": "x"}})
    definition = spec.definition()
    assert "run_id" not in definition and "snapshot_dir" not in definition
    assert "datastore_dir" not in json.dumps(definition)
    assert definition["inputs"]["d"]["path"] == "x"


def test_unknown_datastore_and_escaping_paths_are_refused() -> None:
    with pytest.raises(RunError, match="no datastore 'nope'"):
        spec_of(inputs={"x": {"datastore": "nope", "path": "a"}})
    with pytest.raises(RunError, match="must stay inside"):
        spec_of(inputs={"x": {"datastore": "default", "path": "../etc"}})
