"""The local tracking store: laid out by amlctl, written by real MLflow in child processes
(as a run's tasks write it), read back by amlctl without MLflow."""

from __future__ import annotations

import math
import os
from pathlib import Path

from metricskit import run_python

from amlctl.metrics import filestore

RUN_ID = "exp_1700000000_0a1b2c3d"  # shaped like a local run id

LOG_LOSS = """
import mlflow
for step, loss in enumerate([2.0, 1.0, 0.5, 0.25]):
    mlflow.log_metric("loss", loss, step=step * 10)
mlflow.log_metric("val/loss", 0.75, step=30)
mlflow.log_metric("diverged", float("nan"), step=1)
"""

LOG_ACCURACY = """
import mlflow
mlflow.log_metric("accuracy", 0.5, step=10)
mlflow.log_metric("accuracy", 0.9, step=30)
print(mlflow.active_run().info.run_id)
"""


def test_every_role_logs_into_the_one_run(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    filestore.create_run(run_dir, RUN_ID, "exp", "train")
    env = filestore.task_env(run_dir, RUN_ID)
    run_python(LOG_LOSS, env, tmp_path)  # worker 0
    printed = run_python(LOG_ACCURACY, env, tmp_path)  # worker 1, a separate process
    assert printed.stdout.strip() == RUN_ID  # MLflow saw the run amlctl made, not a new one

    metrics = filestore.read_metrics(filestore.store_dir(run_dir), RUN_ID)
    assert sorted(metrics) == ["accuracy", "diverged", "loss", "val/loss"]
    assert [(p.step, p.value) for p in metrics["loss"]] == [
        (0, 2.0), (10, 1.0), (20, 0.5), (30, 0.25)]
    assert [(p.step, p.value) for p in metrics["accuracy"]] == [(10, 0.5), (30, 0.9)]
    assert [(p.step, p.value) for p in metrics["val/loss"]] == [(30, 0.75)]
    assert math.isnan(metrics["diverged"][0].value)
    assert all(p.timestamp_ms > 1_600_000_000_000 for p in metrics["loss"])
    # One experiment and one run in the store: nothing else was created beside them.
    runs = [p for p in filestore.store_dir(run_dir).glob("*/*/meta.yaml")]
    assert [p.parent.name for p in runs] == [RUN_ID]


def test_mlflow_reads_the_run_amlctl_laid_out(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    filestore.create_run(run_dir, RUN_ID, "tensorflow_experiment", "tf-mnist")
    shown = run_python(
        "import mlflow\n"
        "run = mlflow.MlflowClient().get_run(mlflow.environment_variables.MLFLOW_RUN_ID.get())\n"
        "exp = mlflow.MlflowClient().get_experiment(run.info.experiment_id)\n"
        "print(run.info.run_name, exp.name, run.info.status)\n",
        filestore.task_env(run_dir, RUN_ID), tmp_path)
    assert shown.stdout.split() == ["tf-mnist", "tensorflow_experiment", "RUNNING"]


def test_a_store_mlflow_made_itself_is_read(tmp_path: Path) -> None:
    root = tmp_path / "mlruns"
    made = run_python(
        "import mlflow\n"
        "client = mlflow.MlflowClient()\n"
        "exp = client.create_experiment('other')\n"
        "run = client.create_run(exp)\n"
        "client.log_metric(run.info.run_id, 'rmse', 3.5, step=7)\n"
        "print(run.info.run_id)\n",
        {"MLFLOW_TRACKING_URI": root.as_uri(), "MLFLOW_ALLOW_FILE_STORE": "true"}, tmp_path)
    run_id = made.stdout.strip()
    metrics = filestore.read_metrics(root, run_id)
    assert [(p.step, p.value) for p in metrics["rmse"]] == [(7, 3.5)]


def test_missing_store_or_run_reads_as_no_metrics(tmp_path: Path) -> None:
    assert filestore.read_metrics(tmp_path / "nothing", RUN_ID) == {}
    filestore.create_run(tmp_path / "run", RUN_ID, "exp", "r")
    assert filestore.read_metrics(filestore.store_dir(tmp_path / "run"), "other_run") == {}
    assert filestore.read_metrics(filestore.store_dir(tmp_path / "run"), RUN_ID) == {}


def test_bad_lines_are_skipped_and_links_not_followed(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    folder = filestore.create_run(run_dir, RUN_ID, "exp", "r")
    (folder / "metrics" / "loss").write_text(
        "1700000000000 0.5 2\nnot a line\n1700000000001 x 3\n1700000000002 0.25 1\n\n"
        "1700000000003 0.125")  # a last line still being written: not read yet
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("1700000000000 42 0\n")
    (folder / "metrics" / "linked").symlink_to(outside, target_is_directory=True)
    (folder / "metrics" / "linked_file").symlink_to(outside / "secret")
    metrics = filestore.read_metrics(filestore.store_dir(run_dir), RUN_ID)
    assert list(metrics) == ["loss"]
    assert [(p.step, p.value) for p in metrics["loss"]] == [(1, 0.25), (2, 0.5)]


def test_create_run_is_idempotent(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    folder = filestore.create_run(run_dir, RUN_ID, "exp", "r")
    (folder / "metrics" / "loss").write_text("1700000000000 0.5 2\n")
    meta = (folder / "meta.yaml").read_text()
    assert filestore.create_run(run_dir, RUN_ID, "exp", "r") == folder
    assert (folder / "meta.yaml").read_text() == meta
    assert (folder / "metrics" / "loss").exists()


def test_a_live_reader_picks_up_what_is_appended(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    folder = filestore.create_run(run_dir, RUN_ID, "exp", "r")
    root, loss = filestore.store_dir(run_dir), folder / "metrics" / "loss"
    reader = filestore.StoreReader()
    assert reader.read(root, RUN_ID) == {}
    loss.write_text("1700000000000 1.0 1\n1700000000001 0.5")  # second line half written
    assert [p.value for p in reader.read(root, RUN_ID)["loss"]] == [1.0]
    with loss.open("a") as stream:
        stream.write(" 2\n1700000000002 0.75 0\n")
    assert [(p.step, p.value) for p in reader.read(root, RUN_ID)["loss"]] == [
        (0, 0.75), (1, 1.0), (2, 0.5)]
    loss.write_text("1700000000009 9.0 9\n")  # rewritten from scratch: read from scratch
    assert [(p.step, p.value) for p in reader.read(root, RUN_ID)["loss"]] == [(9, 9.0)]


def test_a_fifo_where_a_metric_goes_does_not_block(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    folder = filestore.create_run(run_dir, RUN_ID, "exp", "r")
    os.mkfifo(folder / "metrics" / "stuck")
    (folder / "metrics" / "loss").write_text("1700000000000 1.0 1\n")
    assert list(filestore.read_metrics(filestore.store_dir(run_dir), RUN_ID)) == ["loss"]


def test_a_run_id_mlflow_would_refuse_is_mapped(tmp_path: Path) -> None:
    long_id = "e" * 250 + "_1700000000_0a1b2c3d"  # a 250-character experiment name
    run_dir = tmp_path / "run"
    filestore.create_run(run_dir, long_id, "e" * 250, "r")
    env = filestore.task_env(run_dir, long_id)
    assert env["MLFLOW_RUN_ID"] != long_id and len(env["MLFLOW_RUN_ID"]) == 32
    run_python("import mlflow\nmlflow.log_metric('loss', 0.5, step=3)\n", env, tmp_path)
    metrics = filestore.read_metrics(filestore.store_dir(run_dir), long_id)
    assert [(p.step, p.value) for p in metrics["loss"]] == [(3, 0.5)]
