"""`amlctl convert batchai` on the command line: files written, never overwritten by surprise."""

from __future__ import annotations

from pathlib import Path

import pytest
from batchai_corpus import FIXTURES
from typer.testing import CliRunner, Result

from amlctl.cli.convert_cmd import app
from amlctl.convert import ConvertError

JOB = FIXTURES / "TensorFlow__TensorFlow-GPU-Distributed.job.json"
CLUSTER = FIXTURES / "rest-2018-05-01__PutCluster.request-body.cluster.json"


def run(*args: str) -> Result:
    return CliRunner().invoke(app, list(args))


def test_writes_manifest_and_markdown_report_and_prints_the_report(tmp_path: Path) -> None:
    out, report = tmp_path / "amlctl.yaml", tmp_path / "migration.md"
    result = run("batchai", "--cluster", str(CLUSTER), "--job", str(JOB), "-o", str(out),
                 "--report", str(report), "--workspace", "ml-ws", "--resource-group", "ml-rg",
                 "--location", "eastus", "--subscription-id", "1111")
    assert result.exit_code == 0, result.output
    manifest = out.read_text()
    assert "name: ml-ws" in manifest and "location: eastus" in manifest
    assert "subscription_id: '1111'" in manifest or 'subscription_id: "1111"' in manifest
    assert report.read_text().startswith("# Batch AI migration report")
    assert "Batch AI migration report" in result.output
    assert "[needs action] properties.vmSize" in result.output
    assert f"Wrote {out} and {report}" in result.output


def test_refuses_to_overwrite_the_output_without_force(tmp_path: Path) -> None:
    out = tmp_path / "amlctl.yaml"
    out.write_text("mine\n")
    result = run("batchai", "--job", str(JOB), "-o", str(out))
    assert result.exit_code == 1
    assert isinstance(result.exception, ConvertError)
    assert str(result.exception) == f"{out} exists; pass --force to overwrite it"
    assert out.read_text() == "mine\n"

    result = run("batchai", "--job", str(JOB), "-o", str(out), "--force")
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("# Converted from Batch AI")


def test_refuses_to_overwrite_the_report_without_force(tmp_path: Path) -> None:
    out, report = tmp_path / "amlctl.yaml", tmp_path / "report.md"
    report.write_text("notes\n")
    result = run("batchai", "--job", str(JOB), "-o", str(out), "--report", str(report))
    assert result.exit_code == 1
    assert "report.md exists" in str(result.exception)
    assert not out.exists()  # nothing written when any target is refused
    assert report.read_text() == "notes\n"


def test_no_compat_drops_the_batch_ai_cluster_flags(tmp_path: Path) -> None:
    out = tmp_path / "amlctl.yaml"
    result = run("batchai", "--job", str(JOB), "-o", str(out), "--no-compat")
    assert result.exit_code == 0, result.output
    manifest = out.read_text()
    assert "AZ_BATCHAI_PS_HOSTS" not in manifest
    assert "compat:" not in manifest and "role_arguments" not in manifest
    assert "TF_CONFIG" in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "nothing to convert"),
        (("--job", "missing.json"), "missing.json: no such file"),
        (("--cluster", str(JOB)), "this is a Batch AI job file, not a cluster file; pass it "
                                  "with --job"),
    ],
)
def test_input_errors_are_domain_errors(tmp_path: Path, args: tuple[str, ...],
                                        message: str) -> None:
    result = run("batchai", *args, "-o", str(tmp_path / "out.yaml"))
    assert result.exit_code == 1
    assert isinstance(result.exception, ConvertError)
    assert message in str(result.exception)
    assert not (tmp_path / "out.yaml").exists()


def test_invalid_json_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.job.json"
    bad.write_text('{\n  "properties": {\n    "nodeCount": 2,\n  }\n}\n')
    result = run("batchai", "--job", str(bad), "-o", str(tmp_path / "out.yaml"))
    assert result.exit_code == 1
    assert f"{bad}:4:3: not valid JSON" in str(result.exception)
