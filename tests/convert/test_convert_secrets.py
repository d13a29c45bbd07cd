"""Secret canary: keys and passwords of the inputs never reach the manifest, the report or stdout.

Copies of real inputs get a recognisable fake secret in every place Batch AI files hold one;
the conversion must reference secret_env(...) instead and print nothing of the value.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from batchai_corpus import FIXTURES
from typer.testing import CliRunner

from amlctl.cli.convert_cmd import app
from amlctl.convert import Conversion, convert_batchai

CANARY = "CANARY-s3cr3t-9f2c"


def _load(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / name).read_text())


def _write(folder: Path, name: str, data: dict[str, Any]) -> Path:
    path = folder / name
    path.write_text(json.dumps(data, indent=2))
    return path


def planted_inputs(folder: Path) -> tuple[list[Path], list[Path]]:
    """Cluster and job files with the canary in every secret-bearing field."""
    put = _load("rest-2018-05-01__PutCluster.request-body.cluster.json")
    props = put["properties"]
    props["userAccountSettings"]["adminUserPassword"] = CANARY + "-password"
    props["nodeSetup"]["mountVolumes"]["azureFileShares"][0]["credentials"]["accountKey"] = (
        CANARY + "-filekey")
    props["nodeSetup"]["mountVolumes"]["azureBlobFileSystems"] = [{
        "accountName": "realaccount", "containerName": "models", "relativeMountPath": "models",
        "credentials": {"accountKey": CANARY + "-blobkey"}}]
    props["nodeSetup"]["performanceCountersSettings"] = {"appInsightsReference": {
        "component": {"id": "/subscriptions/x/appinsights"},
        "instrumentationKey": CANARY + "-insights"}}

    legacy = _load("azure-cli-tests__auto_scale_cluster_with_azure_files.cluster.json")
    legacy["properties"]["userAccountSettings"]["adminUserPassword"] = CANARY + "-legacy-pw"
    legacy["properties"]["nodeSetup"]["mountVolumes"]["azureFileShares"][0]["credentialsInfo"][
        "accountKey"] = CANARY + "-legacy-key"

    setup = _load("using-azure-cli-20__setup-task.cluster.json")
    setup["properties"]["nodeSetup"]["setupTask"]["secrets"][0]["value"] = CANARY + "-setup"

    job = _load("TensorFlow__TensorFlow-GPU-Distributed.job.json")
    jp = job["properties"]
    jp["secrets"] = [{"name": "API_TOKEN", "value": CANARY + "-job-secret"}]
    jp["environmentVariables"] = [{"name": "MODE", "value": "train"}]
    jp["containerSettings"]["imageSourceRegistry"]["credentials"] = {
        "username": "puller", "password": CANARY + "-registry"}
    jp["mountVolumes"]["azureBlobFileSystems"][0]["credentials"] = {
        "accountKey": CANARY + "-job-blobkey"}

    clusters = [_write(folder, "put.cluster.json", put),
                _write(folder, "legacy.cluster.json", legacy),
                _write(folder, "setup.cluster.json", setup)]
    return clusters, [_write(folder, "tf.job.json", job)]


def test_no_secret_value_in_manifest_or_report(
    tmp_path: Path, validate: Callable[[Conversion], object]
) -> None:
    clusters, jobs = planted_inputs(tmp_path)
    conversion = convert_batchai(clusters, jobs)
    outputs = [conversion.to_yaml(), conversion.report.to_text(),
               conversion.report.to_markdown()]
    for output in outputs:
        assert CANARY not in output

    manifest = conversion.to_yaml()
    assert "secret_env('PUT_ADMIN_PASSWORD')" in manifest
    assert "secret_env('API_TOKEN')" in manifest
    assert "secret_env('AZURE_FILE_SHARE_NAME_ACCOUNT_KEY')" in manifest
    assert "secret_env('MODELS_ACCOUNT_KEY')" in manifest
    # The report says which variables to set, by name only.
    text = conversion.report.to_text()
    for name in ("PUT_ADMIN_PASSWORD", "API_TOKEN", "MODELS_ACCOUNT_KEY", "VARIABLE3"):
        assert name in text
    loaded = validate(conversion)
    assert "API_TOKEN" in loaded.missing_secrets  # type: ignore[attr-defined]


def test_no_secret_value_in_cli_files_or_output(tmp_path: Path) -> None:
    clusters, jobs = planted_inputs(tmp_path)
    out, report = tmp_path / "out.yaml", tmp_path / "report.md"
    args = ["batchai", "-o", str(out), "--report", str(report)]
    for path in clusters:
        args += ["--cluster", str(path)]
    for path in jobs:
        args += ["--job", str(path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert CANARY not in result.output
    assert CANARY not in out.read_text()
    assert CANARY not in report.read_text()
