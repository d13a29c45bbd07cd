"""The converted distributed TensorFlow recipe applies and completes on the local backend.

The recipe's script is replaced by a stand-in that does what mnist_replica.py relies on: it
parses the Batch AI flags, checks them against the AZ_BATCHAI_* variables `compat: batchai`
sets, reads its data through the datastore input and writes a checkpoint to its output folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from batchai_corpus import FIXTURES

from amlctl.convert import convert_batchai, yamldoc

RECIPE = FIXTURES / "TensorFlow__TensorFlow-GPU-Distributed.job.json"

STAND_IN = '''\
import argparse, os, sys, time

parser = argparse.ArgumentParser()
for flag in ("--job_name", "--num_gpus", "--ps_hosts", "--worker_hosts", "--train_steps",
             "--checkpoint_dir", "--log_dir", "--task_index", "--data_dir"):
    parser.add_argument(flag)
args = parser.parse_args()
assert args.ps_hosts == os.environ["AZ_BATCHAI_PS_HOSTS"], args.ps_hosts
assert args.worker_hosts == os.environ["AZ_BATCHAI_WORKER_HOSTS"], args.worker_hosts
assert len(args.worker_hosts.split(",")) == 2 and len(args.ps_hosts.split(",")) == 1
assert args.task_index == os.environ["AZ_BATCHAI_TASK_INDEX"]
marker = os.path.join("outputs", "ps-read-the-data")
if args.job_name == "ps":
    assert args.num_gpus == "0"
    with open(os.path.join(args.data_dir, "train.txt")) as data:
        assert data.read() == "1 2 3\\n"
    open(marker, "w").close()
    time.sleep(600)  # parameter servers serve until the run stops them
else:
    assert args.job_name == "worker" and args.train_steps == "10000"
    deadline = time.time() + 60
    while not os.path.exists(marker):
        assert time.time() < deadline, "the parameter server never read its input"
        time.sleep(0.1)
    os.makedirs(args.checkpoint_dir, exist_ok=True)
    with open(os.path.join(args.checkpoint_dir, "ckpt-" + args.task_index), "w") as ckpt:
        ckpt.write("trained")
'''


def test_converted_recipe_applies_and_completes_locally(tmp_path: Path) -> None:
    conversion = convert_batchai([], [RECIPE])
    # The data the parameter servers read, put where the converted datastore input points.
    conversion.manifest["uploads"] = yamldoc.mapping(
        {"mnist": {"datastore": "data", "src_dir": "data", "target_path": "mnist_data"}})
    (tmp_path / "amlctl.yaml").write_text(conversion.to_yaml())
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.txt").write_text("1 2 3\n")
    scripts = tmp_path / "scripts" / "tensorflow"
    scripts.mkdir(parents=True)
    (scripts / "mnist_replica.py").write_text(STAND_IN)

    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLCTL_")}
    env["AZURE_BATCHAI_STORAGE_KEY"] = "bm90LXVzZWQtbG9jYWxseQ=="  # base64, as keys are
    result = subprocess.run(
        [sys.executable, "-m", "amlctl", "apply", "--auto-approve", "--wait"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr

    checkpoints = sorted(p.name for p in tmp_path.glob(".amlctl/**/runs/*/outputs/MODEL/ckpt-*"))
    assert checkpoints == ["ckpt-0", "ckpt-1"]
