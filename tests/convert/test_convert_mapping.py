"""The mapping rules, one by one, on small Batch AI files written for each case."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from amlctl.convert import Conversion, Outcome, convert_batchai

SCHEMA = "https://raw.githubusercontent.com/Azure/BatchAI/master/schemas/{}/{}.json"


@pytest.fixture
def write(tmp_path: Path) -> Callable[[str, dict[str, Any]], Path]:
    def write_file(name: str, body: dict[str, Any]) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(body))
        return path

    return write_file


def cluster(**props: Any) -> dict[str, Any]:
    return {"$schema": SCHEMA.format("2018-05-01", "cluster"), "properties": props}


def job(**props: Any) -> dict[str, Any]:
    return {"$schema": SCHEMA.format("2018-05-01", "job"), "properties": props}


def data(conversion: Conversion) -> dict[str, Any]:
    return YAML(typ="safe").load(conversion.to_yaml())


def entry(conversion: Conversion, field: str) -> list[Any]:
    return [e for e in conversion.report.entries if e.field == field]


# clusters ------------------------------------------------------------------------------------

def test_manual_scale_becomes_min_equals_max_with_the_autoscale_note(write: Any) -> None:
    path = write("gpu.cluster.json", cluster(vmSize="Standard_D2_v2",
                                             scaleSettings={"manual": {"targetNodeCount": 3}}))
    conversion = convert_batchai([path], [])
    compute = data(conversion)["computes"]["gpu"]
    assert (compute["min_nodes"], compute["max_nodes"]) == (3, 3)
    yaml_text = conversion.to_yaml()
    assert "AmlCompute autoscales by default" in yaml_text
    [mapped] = entry(conversion, "properties.scaleSettings.manual.targetNodeCount")
    assert mapped.outcome is Outcome.MAPPED and "autoscales by default" in mapped.note


def test_autoscale_maps_min_and_max_and_drops_the_initial_count(write: Any) -> None:
    path = write("auto.cluster.json", cluster(vmSize="STANDARD_D2_V2", scaleSettings={
        "autoScale": {"minimumNodeCount": 1, "maximumNodeCount": 4, "initialNodeCount": 2}}))
    conversion = convert_batchai([path], [])
    compute = data(conversion)["computes"]["auto"]
    assert (compute["min_nodes"], compute["max_nodes"]) == (1, 4)
    assert compute["vm_size"] == "Standard_D2_v2"  # the catalogue's spelling, found blind to case
    [dropped] = entry(conversion, "properties.scaleSettings.autoScale.initialNodeCount")
    assert dropped.outcome is Outcome.DROPPED


def test_subnet_id_becomes_vnet(write: Any) -> None:
    subnet = ("/subscriptions/0/resourceGroups/net-rg/providers/Microsoft.Network/"
              "virtualNetworks/my-vnet/subnets/train")
    path = write("net.cluster.json", cluster(vmSize="Standard_D2_v2", subnet={"id": subnet}))
    compute = data(convert_batchai([path], []))["computes"]["net"]
    assert compute["vnet"] == {"resource_group": "net-rg", "name": "my-vnet", "subnet": "train"}


def test_retired_size_is_flagged_with_its_successor(write: Any) -> None:
    path = write("old.cluster.json", cluster(vmSize="STANDARD_NC6"))
    conversion = convert_batchai([path], [])
    [flag] = entry(conversion, "properties.vmSize")
    assert flag.outcome is Outcome.ACTION
    assert "retired" in flag.note and "Standard_NC4as_T4_v3" in flag.note
    assert "Move to Standard_NC4as_T4_v3" in conversion.to_yaml()


def test_admin_user_maps_and_password_becomes_secret_env(write: Any) -> None:
    path = write("c.cluster.json", cluster(vmSize="Standard_D2_v2", userAccountSettings={
        "adminUserName": "ops", "adminUserSshPublicKey": "ssh-rsa AAAA ops@x",
        "adminUserPassword": "hunter2"}))
    conversion = convert_batchai([path], [])
    compute = data(conversion)["computes"]["c-cluster"]
    assert compute["admin_username"] == "ops"
    assert compute["admin_user_ssh_key"] == "ssh-rsa AAAA ops@x"
    assert compute["admin_user_password"] == "{{ secret_env('C_CLUSTER_ADMIN_PASSWORD') }}"
    assert "hunter2" not in conversion.to_yaml() + conversion.report.to_markdown()


def test_names_are_sanitised_and_renames_reported(write: Any) -> None:
    path = write("9 very_long cluster name!.cluster.json", cluster(vmSize="Standard_D2_v2"))
    conversion = convert_batchai([path], [])
    [name] = data(conversion)["computes"]
    assert name == "cluster-9-very"
    [renamed] = entry(conversion, "(name)")
    assert "2-16 characters" in renamed.note and "9 very_long cluster name!" in renamed.note


def test_file_without_properties_wrapper_and_legacy_location(
    write: Any, validate: Callable[[Conversion], object]
) -> None:
    path = write("flat.json", {"location": "northeurope", "vmSize": "Standard_D2_v2",
                               "scaleSettings": {"manual": {"targetNodeCount": 1}}})
    conversion = convert_batchai([path], [])
    assert data(conversion)["workspace"]["location"] == "northeurope"
    assert entry(conversion, "scaleSettings.manual.targetNodeCount")  # paths as in the file
    validate(conversion)


def test_setup_task_and_image_are_reported_with_what_to_do(write: Any) -> None:
    path = write("s.cluster.json", cluster(
        vmSize="Standard_D2_v2",
        virtualMachineConfiguration={"imageReference": {
            "publisher": "microsoft-ads", "offer": "linux-data-science-vm-ubuntu",
            "sku": "linuxdsvmubuntu"}},
        nodeSetup={"setupTask": {"commandLine": "apt-get install -y foo",
                                 "stdOutErrPathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/afs",
                                 "secrets": [{"name": "TOKEN", "value": "abc123"}]}}))
    conversion = convert_batchai([path], [])
    [task] = entry(conversion, "properties.nodeSetup.setupTask")
    assert task.outcome is Outcome.ACTION and "docker image" in task.note and "TOKEN" in task.note
    assert "abc123" not in conversion.report.to_text()
    [image] = entry(conversion, "properties.virtualMachineConfiguration")
    assert image.outcome is Outcome.ACTION and "linux-data-science-vm-ubuntu" in image.note


def test_unknown_fields_are_reported_not_lost(write: Any) -> None:
    path = write("u.cluster.json", cluster(vmSize="Standard_D2_v2",
                                           futureFeature={"a": 1, "b": [2, 3]}))
    conversion = convert_batchai([path], [])
    [unknown] = entry(conversion, "properties.futureFeature")
    assert unknown.outcome is Outcome.ACTION and "not understood" in unknown.note


# jobs ----------------------------------------------------------------------------------------

def test_tensorflow_defaults_are_batch_ai_s(write: Any) -> None:
    path = write("tf.job.json", job(nodeCount=3, tensorFlowSettings={
        "pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/code/train.py",
        "workerCommandLineArgs": "--lr 0.1", "parameterServerCommandLineArgs": "--lr 0.1"}))
    conversion = convert_batchai([], [path])
    run = data(conversion)["runs"]["tf"]
    assert run["distribution"] == {"type": "parameter_server", "node_count": 3,
                                   "worker_count": 3, "parameter_server_count": 1}
    assert run["arguments"] == {"--lr": 0.1}
    assert "role_arguments" not in run and "compat" not in run
    assert (run["source_directory"], run["entry_script"]) == ("code", "train.py")
    notes = " ".join(e.note for e in conversion.report.entries)
    assert "Batch AI's default: nodeCount" in notes and "Batch AI's default: 1" in notes


def test_single_node_tensorflow_is_a_plain_run(write: Any) -> None:
    path = write("one.job.json", job(nodeCount=1, tensorFlowSettings={
        "pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/code/train.py",
        "masterCommandLineArgs": "--epochs 3 --verbose"}))
    run = data(convert_batchai([], [path]))["runs"]["one"]
    assert "distribution" not in run
    assert run["arguments"] == {"--epochs": 3, "--verbose": None}


def test_master_arguments_unlike_the_workers_are_reported(write: Any) -> None:
    path = write("m.job.json", job(nodeCount=2, tensorFlowSettings={
        "pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/code/train.py",
        "masterCommandLineArgs": "--chief --lr 1", "workerCommandLineArgs": "--lr 1",
        "parameterServerCommandLineArgs": "--lr 1"}))
    conversion = convert_batchai([], [path])
    [lost] = [e for e in entry(conversion, "properties.tensorFlowSettings.masterCommandLineArgs")
              if e.outcome is Outcome.ACTION]
    assert "`--chief`" in lost.note and "no master role" in lost.note


def test_inputs_outputs_and_mounts_become_datastore_inputs(
    write: Any, validate: Callable[[Conversion], object]
) -> None:
    path = write("io.job.json", job(
        nodeCount=1,
        mountVolumes={"azureBlobFileSystems": [{
            "accountName": "mystore", "containerName": "data", "relativeMountPath": "bfs",
            "credentials": {"accountKey": "k3y"}}]},
        inputDirectories=[{"id": "TRAIN", "path": "$AZ_BATCHAI_JOB_MOUNT_ROOT/bfs/train"},
                          {"id": "UNUSED", "path": "$AZ_BATCHAI_JOB_MOUNT_ROOT/bfs/extra"}],
        outputDirectories=[{"id": "MODEL", "pathPrefix": "$AZ_BATCHAI_JOB_MOUNT_ROOT/bfs"}],
        pyTorchSettings={
            "pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/bfs/code/main.py",
            "commandLineArgs": "--data=$AZ_BATCHAI_INPUT_TRAIN/part1 "
                               "--vocab $AZ_BATCHAI_JOB_MOUNT_ROOT/bfs/vocab.txt "
                               "--out $AZ_BATCHAI_OUTPUT_MODEL/best --tmp $AZ_BATCHAI_JOB_TEMP"}))
    conversion = convert_batchai([], [path])
    run = data(conversion)["runs"]["io"]
    assert run["arguments"] == {
        "--data": {"datastore": "data", "path": "train/part1"},
        "--vocab": {"datastore": "data", "path": "vocab.txt"},
        "--out": "outputs/MODEL/best",
        "--tmp": "$AZ_BATCHAI_JOB_TEMP",
    }
    # An input no command line names: the script reads the variable, so it stays with compat.
    assert run["inputs"] == {"UNUSED": {"datastore": "data", "path": "extra"}}
    assert run["outputs"] == ["MODEL"]
    assert run["compat"] == "batchai"
    store = data(conversion)["datastores"]["data"]
    assert store == {"type": "azure_blob", "account_name": "mystore", "container_name": "data",
                     "account_key": "{{ secret_env('DATA_ACCOUNT_KEY') }}"}
    assert "k3y" not in conversion.to_yaml()
    validate(conversion)


def test_commands_use_azure_ml_variables(write: Any) -> None:
    path = write("cmd.job.json", job(
        nodeCount=1,
        mountVolumes={"azureFileShares": [{
            "azureFileUrl": "https://acct.file.core.windows.net/share",
            "relativeMountPath": "afs"}]},
        inputDirectories=[{"id": "IN", "path": "$AZ_BATCHAI_JOB_MOUNT_ROOT/afs/in"}],
        customToolkitSettings={"commandLine": "cat $AZ_BATCHAI_INPUT_IN/a "
                                              "${AZ_BATCHAI_JOB_MOUNT_ROOT}/afs/b.txt "
                                              "> $AZ_BATCHAI_OUTPUT_OUT/c"}))
    conversion = convert_batchai([], [path])
    run = data(conversion)["runs"]["cmd"]
    assert run["command"] == ("cat $AZUREML_DATAREFERENCE_IN/a $AZUREML_DATAREFERENCE_B_TXT "
                              "> outputs/OUT/c")
    assert run["inputs"] == {"IN": {"datastore": "share", "path": "in"},
                             "B_TXT": {"datastore": "share", "path": "b.txt"}}
    assert run["outputs"] == ["OUT"]
    assert "compat" not in run


def test_horovod_process_count_is_spread_over_the_nodes(write: Any) -> None:
    path = write("h.job.json", job(nodeCount=2, horovodSettings={
        "pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/s/train.py", "processCount": 8}))
    run = data(convert_batchai([], [path]))["runs"]["h"]
    assert run["distribution"] == {"type": "mpi", "node_count": 2, "process_count_per_node": 4}

    uneven = write("u.job.json", job(nodeCount=2, customMpiSettings={
        "commandLine": "python x.py", "processCount": 5}))
    conversion = convert_batchai([], [uneven])
    assert data(conversion)["runs"]["u"]["distribution"]["process_count_per_node"] == 3
    [note] = entry(conversion, "properties.customMpiSettings.processCount")
    assert note.outcome is Outcome.ACTION and "do not split evenly" in note.note


def test_environment_preparation_and_limits(write: Any,
                                            validate: Callable[[Conversion], object]) -> None:
    path = write("env.job.json", job(
        nodeCount=1,
        containerSettings={"imageSourceRegistry": {"serverUrl": "myreg.azurecr.io",
                                                   "image": "team/train:1"}},
        jobPreparation={"commandLine": "pip install keras==2.1.6 -U && apt-get install -y x"},
        environmentVariables=[{"name": "MODE", "value": "fast"}],
        secrets=[{"name": "API_KEY", "value": "v"},
                 {"name": "DB_PASSWORD", "valueSecretReference": {
                     "sourceVault": {"id": "/subscriptions/0/vaults/kv"},
                     "secretUrl": "https://kv.vault.azure.net/secrets/db"}}],
        constraints={"maxWallClockTime": "1.02:00:00"},
        schedulingPriority="high",
        chainerSettings={"pythonScriptFilePath": "$AZ_BATCHAI_JOB_MOUNT_ROOT/s/train.py"}))
    conversion = convert_batchai([], [path])
    run = data(conversion)["runs"]["env"]
    assert run["environment"] == {
        "docker_image": "myreg.azurecr.io/team/train:1", "pip": ["keras==2.1.6"],
        "env_vars": {"MODE": "fast", "API_KEY": "{{ secret_env('API_KEY') }}",
                     "DB_PASSWORD": "{{ secret_env('DB_PASSWORD') }}"}}
    assert run["max_run_duration_seconds"] == 26 * 3600
    [prep] = entry(conversion, "properties.jobPreparation.commandLine")
    assert prep.outcome is Outcome.ACTION and "apt-get install -y x" in prep.note
    [vault] = entry(conversion, "properties.secrets[1]")
    assert "https://kv.vault.azure.net/secrets/db" in vault.note
    [priority] = entry(conversion, "properties.schedulingPriority")
    assert priority.outcome is Outcome.DROPPED
    validate(conversion)


@pytest.mark.parametrize(("text", "seconds"), [("PT2H", 7200), ("P1DT30M", 88200),
                                                ("00:10:00", 600), ("7.00:00:00", 604800)])
def test_wall_clock_formats(write: Any, text: str, seconds: int) -> None:
    path = write("t.job.json", job(nodeCount=1, constraints={"maxWallClockTime": text},
                                   customToolkitSettings={"commandLine": "true"}))
    assert data(convert_batchai([], [path]))["runs"]["t"]["max_run_duration_seconds"] == seconds


def test_preview_job_experiment_name_and_priority(write: Any) -> None:
    path = write("old.json", {"location": "westus2", "properties": {
        "experimentName": "mnist experiments", "priority": 100, "nodeCount": 1,
        "toolType": "cntk",
        "cntkSettings": {"languageType": "BrainScript",
                         "configFilePath": "$AZ_BATCHAI_MOUNT_ROOT/external/c.cntk"},
        "outputDirectories": [{"id": "MODEL", "pathPrefix": "$AZ_BATCHAI_MOUNT_ROOT/external",
                               "type": "model", "createNew": True}]}})
    conversion = convert_batchai([], [path])
    doc = data(conversion)
    assert doc["runs"]["old"]["experiment"] == "mnist-experiments"
    assert list(doc["experiments"]) == ["mnist-experiments"]
    assert doc["runs"]["old"]["command"] == "cntk configFile=$AZUREML_DATAREFERENCE_C_CNTK"
    assert doc["workspace"]["location"] == "westus2"
    assert entry(conversion, "properties.priority")[0].outcome is Outcome.DROPPED


def test_jobs_land_on_the_cluster_they_name(write: Any) -> None:
    first = write("small.cluster.json", cluster(vmSize="Standard_D2_v2", scaleSettings={
        "manual": {"targetNodeCount": 1}}))
    second = write("big.cluster.json", cluster(vmSize="Standard_D2_v2", scaleSettings={
        "manual": {"targetNodeCount": 1}}))
    cluster_id = ("/subscriptions/1234/resourceGroups/ml-rg/providers/Microsoft.BatchAI/"
                  "workspaces/team-ws/clusters/big")
    path = write("j.job.json", job(nodeCount=2, cluster={"id": cluster_id},
                                   customMpiSettings={"commandLine": "python x.py"}))
    conversion = convert_batchai([first, second], [path])
    doc = data(conversion)
    assert doc["runs"]["j"]["compute"] == "big"
    # The job needs two nodes: the cluster grows, and the report says so.
    assert doc["computes"]["big"]["max_nodes"] == 2 and doc["computes"]["big"]["min_nodes"] == 1
    assert any("raised from 1 to 2" in e.note for e in conversion.report.entries)
    # The cluster id tells the resource group and the Batch AI workspace name.
    assert doc["workspace"]["resource_group"] == "ml-rg"
    assert doc["workspace"]["name"] == "team-ws"
    assert "1234" in doc["workspace"]["subscription_id"]


def test_same_names_get_suffixes(write: Any) -> None:
    a = write("a__train.job.json", job(nodeCount=1, customToolkitSettings={"commandLine": "a"}))
    b = write("b__train.job.json", job(nodeCount=1, customToolkitSettings={"commandLine": "b"}))
    doc = data(convert_batchai([], [a, b]))
    assert list(doc["runs"]) == ["train", "train-2"]


def test_placeholders_read_the_az_batchai_variables(write: Any) -> None:
    path = write("p.job.json", job(
        nodeCount=1,
        mountVolumes={"azureFileShares": [{
            "azureFileUrl": "https://<AZURE_BATCHAI_STORAGE_ACCOUNT>.file.core.windows.net/data",
            "relativeMountPath": "afs"}]},
        customToolkitSettings={"commandLine": "ls $AZ_BATCHAI_JOB_MOUNT_ROOT/afs"}))
    conversion = convert_batchai([], [path])
    store = data(conversion)["datastores"]["data"]
    assert store["account_name"] == "{{ env('AZURE_BATCHAI_STORAGE_ACCOUNT', 'changeme') }}"
    assert store["account_key"] == "{{ secret_env('AZURE_BATCHAI_STORAGE_KEY') }}"
    [todo] = entry(conversion, "<AZURE_BATCHAI_STORAGE_ACCOUNT>")
    assert todo.outcome is Outcome.ACTION


def test_inputs_with_the_same_file_name_stay_apart(tmp_path: Path) -> None:
    for team in ("team-a", "team-b"):
        (tmp_path / team).mkdir()
        (tmp_path / team / "job.json").write_text(json.dumps(job(
            nodeCount=1, customToolkitSettings={"commandLine": f"echo {team}"})))
    conversion = convert_batchai([], [tmp_path / "team-a" / "job.json",
                                      tmp_path / "team-b" / "job.json"])
    sources = [s.source for s in conversion.report.sources]
    assert sources == [(tmp_path / "team-a" / "job.json").as_posix(),
                       (tmp_path / "team-b" / "job.json").as_posix()]
    assert list(data(conversion)["runs"]) == ["job", "job-2"]
