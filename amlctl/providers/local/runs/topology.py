"""Where a run's tasks go and what each one is told: placement, ports, environment variables.

- `parameter_server`: parameter_server_count `ps` tasks then worker_count `worker` tasks,
  dealt round-robin over node_count nodes (ps:0 on node 0, worker:0 on node 1, ...). Each
  gets a free port on 127.0.0.1 and TF_CONFIG exactly as Azure ML writes it:
  `{"cluster": {"ps": [...], "worker": [...]}, "task": {"type": ..., "index": ...},
  "environment": "cloud"}`.
- `multi_worker`: workers only, same TF_CONFIG shape without `ps`.
- `none`: one task, `worker:0`, no TF_CONFIG.
- `mpi`: process_count_per_node x node_count tasks named `worker:<rank>`, rank r on node
  r // process_count_per_node, with Open MPI's rank variables (OMPI_COMM_WORLD_RANK, _SIZE,
  _LOCAL_RANK, _LOCAL_SIZE, _NODE_RANK) and AZ_BATCHAI_MPI_MASTER_NODE. This is a local
  approximation: the processes are started as MPI would start them and know their rank, but
  no MPI runtime connects them; a program that calls MPI itself needs mpirun.

Every node is this machine: a "node" here is a placement label and a private temp folder.
"""

from __future__ import annotations

import json
import re
import socket
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from pathlib import Path

from amlctl.metrics import filestore
from amlctl.providers.local.runs.spec import DATAREFERENCE_PREFIX, DistributionSpec, RunSpec
from amlctl.providers.logroles import task_name

HOST = "127.0.0.1"
PS, WORKER = "ps", "worker"


@dataclass(frozen=True)
class Task:
    """One process of a run."""

    role: str  # ps | worker
    index: int  # within its role; the rank for mpi
    node: int
    port: int | None = None  # TensorFlow server port (parameter_server, multi_worker)
    local_rank: int = 0  # mpi: rank within the node

    @property
    def name(self) -> str:
        """`worker:1`: how logs and errors name the task."""
        return task_name(self.role, self.index)

    @property
    def address(self) -> str:
        """host:port of the task's TensorFlow server."""
        return f"{HOST}:{self.port}"

    @property
    def log_name(self) -> str:
        """File name of the task's log under the run's logs/."""
        return f"{self.role}_{self.index}.log"


def layout(distribution: DistributionSpec) -> list[Task]:
    """The run's tasks and their nodes, without ports. Deterministic."""
    kind, nodes = distribution.type, max(1, distribution.node_count)
    if kind == "none":
        return [Task(WORKER, 0, 0)]
    if kind == "mpi":
        per_node = max(1, distribution.process_count_per_node)
        return [Task(WORKER, rank, rank // per_node, local_rank=rank % per_node)
                for rank in range(per_node * nodes)]
    roles = [(PS, i) for i in range(distribution.parameter_server_count if kind ==
                                     "parameter_server" else 0)]
    roles += [(WORKER, i) for i in range(distribution.worker_count)]
    return [Task(role, index, position % nodes) for position, (role, index) in enumerate(roles)]


def free_ports(count: int) -> list[int]:
    """`count` distinct ports free on 127.0.0.1 now (all sockets held open until every port
    is picked, so none is handed out twice)."""
    with ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((HOST, 0))
            ports.append(sock.getsockname()[1])
        return ports


def with_ports(tasks: Sequence[Task], distribution: DistributionSpec) -> list[Task]:
    """The tasks with a free port each, for the distributions that run TensorFlow servers."""
    if distribution.type not in ("parameter_server", "multi_worker"):
        return list(tasks)
    return [replace(task, port=port) for task, port in zip(tasks, free_ports(len(tasks)),
                                                            strict=True)]


def cluster(tasks: Sequence[Task]) -> dict[str, list[str]]:
    """The TF_CONFIG cluster: addresses by role, ps first, each in index order."""
    spec: dict[str, list[str]] = {}
    for role in (PS, WORKER):
        members = sorted((t for t in tasks if t.role == role), key=lambda t: t.index)
        if members:
            spec[role] = [t.address for t in members]
    return spec


def tf_config(task: Task, tasks: Sequence[Task], distribution: DistributionSpec) -> str | None:
    """TF_CONFIG for `task` as Azure ML sets it, or None when the run has no TF cluster."""
    if distribution.type not in ("parameter_server", "multi_worker"):
        return None
    return json.dumps({"cluster": cluster(tasks),
                       "task": {"type": task.role, "index": task.index},
                       "environment": "cloud"})


def node_temp(run_dir: Path, node: int) -> Path:
    """A node's private temp folder (AZ_BATCHAI_JOB_TEMP)."""
    return run_dir / "tmp" / f"node-{node}"


def shared_temp(run_dir: Path) -> Path:
    """The temp folder every node of the run shares (AZ_BATCHAI_SHARED_JOB_TEMP)."""
    return run_dir / "tmp" / "shared"


def output_dir(run_dir: Path, output_id: str) -> Path:
    """An output folder under the run's outputs/."""
    return run_dir / "outputs" / output_id


def task_env(spec: RunSpec, task: Task, tasks: Sequence[Task], run_dir: Path,
             input_paths: Mapping[str, str]) -> dict[str, str]:
    """The variables amlctl sets for one task (the caller adds them to a base environment).

    `input_paths` maps input id -> the local path the input resolved to.
    """
    env = {
        "AZUREML_RUN_ID": spec.run_id,
        "AZUREML_ARM_SUBSCRIPTION": spec.subscription_id,
        "AZUREML_ARM_RESOURCEGROUP": spec.resource_group,
        "AZUREML_ARM_WORKSPACE_NAME": spec.workspace_name,
        "AZUREML_ARM_PROJECT_NAME": spec.experiment,
    }
    for input_id, path in input_paths.items():
        env[DATAREFERENCE_PREFIX + input_id] = path
    env.update(filestore.task_env(run_dir, spec.run_id))  # every role logs into the one run
    config = tf_config(task, tasks, spec.distribution)
    if config is not None:
        env["TF_CONFIG"] = config
    if spec.distribution.type == "mpi":
        per_node = max(1, spec.distribution.process_count_per_node)
        env.update({
            "OMPI_COMM_WORLD_RANK": str(task.index),
            "OMPI_COMM_WORLD_SIZE": str(len(tasks)),
            "OMPI_COMM_WORLD_LOCAL_RANK": str(task.local_rank),
            "OMPI_COMM_WORLD_LOCAL_SIZE": str(per_node),
            "OMPI_COMM_WORLD_NODE_RANK": str(task.node),
            "AZ_BATCHAI_MPI_MASTER_NODE": HOST,
        })
    if spec.compat == "batchai":
        env.update(_batchai(spec, task, tasks, run_dir, input_paths))
    return env


def _batchai(spec: RunSpec, task: Task, tasks: Sequence[Task], run_dir: Path,
             input_paths: Mapping[str, str]) -> dict[str, str]:
    """The variables a Batch AI job's processes were given."""
    env = {
        "AZ_BATCHAI_TASK_INDEX": str(task.index),
        "AZ_BATCHAI_NUM_GPUS": "0",  # no GPU is handed to local tasks
        "AZ_BATCHAI_JOB_TEMP": str(node_temp(run_dir, task.node)),
        "AZ_BATCHAI_SHARED_JOB_TEMP": str(shared_temp(run_dir)),
    }
    hosts = cluster(tasks) if any(t.port for t in tasks) else {}
    if PS in hosts:
        env["AZ_BATCHAI_PS_HOSTS"] = ",".join(hosts[PS])
    if WORKER in hosts:
        env["AZ_BATCHAI_WORKER_HOSTS"] = ",".join(hosts[WORKER])
    for input_id, path in input_paths.items():
        env[f"AZ_BATCHAI_INPUT_{input_id}"] = path
    for output_id in spec.outputs:
        env[f"AZ_BATCHAI_OUTPUT_{output_id}"] = str(output_dir(run_dir, output_id))
    return env


_REFERENCE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand(argument: str, variables: Mapping[str, str]) -> str:
    """Replace `$NAME` / `${NAME}` by its value when NAME is one of `variables` (the run's own
    variables, not the machine's); anything else is left as written."""
    def substitute(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        return variables.get(name, match.group(0))

    return _REFERENCE.sub(substitute, argument)
