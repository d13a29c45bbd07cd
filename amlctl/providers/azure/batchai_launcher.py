"""Runs an unchanged Azure Batch AI training script on Azure ML (`compat: batchai`).

amlctl copies this file into the run's snapshot and makes it the entry point. On each node it
derives the variables Batch AI gave its processes from what Azure ML sets, then replaces itself
with the real script:

- AZ_BATCHAI_PS_HOSTS / AZ_BATCHAI_WORKER_HOSTS / AZ_BATCHAI_TASK_INDEX from TF_CONFIG (Azure ML
  writes `ps` and `worker` jobs; a `chief` or `master` task counts as a worker, as Batch AI
  had no such role);
- AZ_BATCHAI_INPUT_<ID> from AZUREML_DATAREFERENCE_<ID>;
- AZ_BATCHAI_OUTPUT_<ID> as outputs/<ID> under the working folder (Azure ML uploads outputs/);
- AZ_BATCHAI_JOB_TEMP, a private temp folder of this node; AZ_BATCHAI_NUM_GPUS from
  CUDA_VISIBLE_DEVICES or nvidia-smi.

amlctl passes the script or command and per-role arguments in AMLCTL_BATCHAI_* variables.
`$AZ_BATCHAI_...` references in the arguments are expanded, as Batch AI did. Standard library
only: it runs in whatever Python the run's environment has.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Mapping

DATAREFERENCE = "AZUREML_DATAREFERENCE_"
WORKER_ROLES = ("worker", "chief", "master")


def role_and_index(tf_config: Mapping[str, object]) -> tuple[str, int]:
    """This process's Batch AI role (ps or worker) and index among that role."""
    task = tf_config.get("task") or {}
    assert isinstance(task, dict)
    role = str(task.get("type") or "worker")
    index = int(task.get("index") or 0)
    if role == "ps":
        return "ps", index
    cluster = tf_config.get("cluster") or {}
    assert isinstance(cluster, dict)
    if role in ("chief", "master"):
        return "worker", 0  # the chief is worker 0 of Batch AI; other workers shift by one
    if "chief" in cluster or "master" in cluster:
        return "worker", index + 1
    return "worker", index


def hosts(tf_config: Mapping[str, object]) -> tuple[list[str], list[str]]:
    """(ps hosts, worker hosts) with a chief/master first among the workers."""
    cluster = tf_config.get("cluster") or {}
    assert isinstance(cluster, dict)
    workers: list[str] = []
    for role in WORKER_ROLES[::-1]:  # master, chief, then workers
        workers.extend(str(h) for h in cluster.get(role) or [])
    return [str(h) for h in cluster.get("ps") or []], workers


def gpu_count(env: Mapping[str, str]) -> int:
    """GPUs this process may use."""
    visible = env.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip() and d.strip() != "-1"])
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return 0
    try:
        out = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except (OSError, subprocess.TimeoutExpired):
        return 0
    return len([line for line in out.splitlines() if line.startswith("GPU ")])


def batchai_env(env: Mapping[str, str], cwd: str) -> dict[str, str]:
    """The AZ_BATCHAI_* variables for this process."""
    out: dict[str, str] = {}
    raw = env.get("TF_CONFIG")
    config = json.loads(raw) if raw else {}
    role, index = role_and_index(config) if config else ("worker", 0)
    ps, workers = hosts(config)
    if ps:
        out["AZ_BATCHAI_PS_HOSTS"] = ",".join(ps)
    if workers:
        out["AZ_BATCHAI_WORKER_HOSTS"] = ",".join(workers)
    out["AZ_BATCHAI_TASK_INDEX"] = str(index)
    out["AMLCTL_BATCHAI_ROLE"] = role
    rank = env.get("OMPI_COMM_WORLD_RANK")
    if rank is not None and not config:
        out["AZ_BATCHAI_TASK_INDEX"] = rank
    for name, value in env.items():
        if name.startswith(DATAREFERENCE):
            out["AZ_BATCHAI_INPUT_" + name[len(DATAREFERENCE):]] = value
    for output_id in filter(None, env.get("AMLCTL_BATCHAI_OUTPUTS", "").split(",")):
        path = os.path.join(cwd, "outputs", output_id)
        os.makedirs(path, exist_ok=True)
        out["AZ_BATCHAI_OUTPUT_" + output_id] = path
    out["AZ_BATCHAI_JOB_TEMP"] = tempfile.mkdtemp(prefix="batchai-job-")
    out["AZ_BATCHAI_NUM_GPUS"] = str(gpu_count(env))
    return out


_REFERENCE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand(argument: str, variables: Mapping[str, str]) -> str:
    """Replace $NAME / ${NAME} for NAME in `variables`; leave anything else as written."""
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return _REFERENCE.sub(substitute, argument)


def command_line(env: Mapping[str, str], args: list[str], variables: Mapping[str, str]
                 ) -> list[str]:
    """What to run: the entry script with the common and this role's arguments, or the
    command through the shell."""
    role_args = json.loads(env.get("AMLCTL_BATCHAI_ROLE_ARGS") or "{}")
    extra = [str(a) for a in role_args.get(variables.get("AMLCTL_BATCHAI_ROLE", "worker"), [])]
    full = [expand(a, variables) for a in [*args, *extra]]
    script = env.get("AMLCTL_BATCHAI_ENTRY_SCRIPT")
    if script:
        return [sys.executable, script, *full]
    command = env.get("AMLCTL_BATCHAI_COMMAND")
    if not command:
        raise SystemExit("amlctl batchai launcher: neither AMLCTL_BATCHAI_ENTRY_SCRIPT nor "
                         "AMLCTL_BATCHAI_COMMAND is set")
    line = " ".join([expand(command, variables), *(shlex.quote(a) for a in full)])
    return ["/bin/sh", "-c", line]


def main(argv: list[str]) -> None:
    """Set the variables and exec the real program (its exit code becomes the run's)."""
    env = dict(os.environ)
    derived = batchai_env(env, os.getcwd())
    env.update(derived)
    cmd = command_line(env, argv, {**env, **derived})
    sys.stdout.flush()
    os.execvpe(cmd[0], cmd, env)


if __name__ == "__main__":
    main(sys.argv[1:])
