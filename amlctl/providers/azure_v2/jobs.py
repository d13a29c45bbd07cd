"""Runs as SDK v2 command jobs: build offline, submit exactly once, read back as v1 records.

`build_job` turns a run definition (amlctl.runs.definition) into `azure.ai.ml.command(...)`:
the entry script or command with the rendered arguments,
`TensorFlowDistribution(parameter_server_count, worker_count)` or `MpiDistribution` with
`instance_count` = the run's node_count, every datastore input as an `Input` of
`azureml://datastores/NAME/paths/P` (`ro_mount` or `download`), an Environment from the conda
file or pip list (docker image as the base), and v1's tags (`amlctl.stack`,
`amlctl.spec_hash`, `amlctl.run`), so a run submitted through either SDK is found by the other.

The job name is the run id the v1 backend chooses (from the stack, the run name, the spec hash
and, for `--replace`, the run replaced): submitting the same run again names the same job, so
a retried or repeated submission finds the job instead of starting a second paid one.
`compat: batchai` reuses the v1 launcher and its staging.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlctl.providers.azure.runs import (
    DATAREFERENCE,
    LAUNCHER,
    RUN_NAME_TAG,
    STATUS,
    InputTable,
    RunRecord,
    _conda_path,
    input_id,
    run_tags,
    stage_with_launcher,
)
from amlctl.providers.azure_v2 import sdk
from amlctl.providers.base import RunRequest
from amlctl.runs.arguments import render_arguments
from amlctl.runs.definition import RunDefinition, RunDistribution
from amlctl.runs.identity import run_id

# Azure ML's curated base images (what `az ml` v2 examples use)
CPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-ubuntu22.04:latest"
GPU_IMAGE = "mcr.microsoft.com/azureml/openmpi4.1.0-cuda11.8-cudnn8-ubuntu22.04:latest"
PYTHON = "python=3.10"
MODES = {"mount": "ro_mount", "download": "download"}


def job_name(stack: str, run: str, spec_hash: str, supersedes: str | None = None) -> str:
    """The job's name: the run id the v1 backend gives the same submission
    (amlctl.runs.identity.run_id), so both SDKs name one run alike and either finds it."""
    return run_id(stack, run, spec_hash, supersedes)


@dataclass
class BuiltJob:
    """The SDK job of one submission, and the staged folder to remove afterwards."""

    job: Any
    name: str
    staged: Path | None = None

    def cleanup(self) -> None:
        """Remove the staged snapshot, if one was made."""
        import shutil

        if self.staged is not None:
            shutil.rmtree(self.staged, ignore_errors=True)
            self.staged = None


class _Inputs(InputTable):
    """Datastore inputs of one job as SDK v2 `Input`s (the v1 backend's ids)."""

    def __init__(self, datastore_name: Callable[[str], str]) -> None:
        def job_input(ref_id: str, key: tuple[str, str, str]) -> Any:
            path = f"azureml://datastores/{datastore_name(key[0])}/paths/{key[1]}"
            return sdk.load().Input(type="uri_folder", path=path, mode=MODES[key[2]])

        super().__init__(job_input)

    def exports(self) -> str:
        """Shell exports of AZUREML_DATAREFERENCE_<ID>, the variable v1 runs (and the Batch
        AI launcher) read an input's path from."""
        return "".join(f"export {DATAREFERENCE}{i}=\"${{{{inputs.{i}}}}}\"; "
                       for i in self.made)


def _placeholder(input_name: str) -> str:
    return f"${{{{inputs.{input_name}}}}}"


def _quote(arg: str) -> str:
    return arg if re.fullmatch(r"\$\{\{inputs\.[A-Za-z0-9_]+\}\}", arg) else shlex.quote(arg)


def build_environment(run: RunDefinition, name: str, source_dir: Path) -> Any:
    """An anonymous Environment: the conda file, else the pip list; docker image as base."""
    entities = sdk.load().entities
    env = run.environment
    image = env.docker_image or (GPU_IMAGE if run.use_gpu else CPU_IMAGE)
    if env.conda_file:
        conda: Any = str(_conda_path(env.conda_file, source_dir))
    else:
        conda = {"name": name, "channels": ["conda-forge"],
                 "dependencies": [PYTHON, "pip", {"pip": list(env.pip)}]}
    return entities.Environment(image=image, conda_file=conda)


def _distribution(dist: RunDistribution) -> tuple[Any, int | None]:
    ml = sdk.load()
    nodes = dist.node_count if dist.type != "none" else None
    if dist.type == "parameter_server":
        return ml.TensorFlowDistribution(parameter_server_count=dist.parameter_server_count,
                                         worker_count=dist.worker_count), nodes
    if dist.type == "multi_worker":
        return ml.TensorFlowDistribution(parameter_server_count=0,
                                         worker_count=dist.worker_count), nodes
    if dist.type == "mpi":
        return ml.MpiDistribution(
            process_count_per_instance=dist.process_count_per_node), nodes
    return None, None


def build_job(request: RunRequest, stack: str, datastore_name: Callable[[str], str]
              ) -> BuiltJob:
    """The command job for a run request; no network."""
    ml = sdk.load()
    run = request.run
    inputs = _Inputs(datastore_name)
    inputs.add_named(run.inputs)
    arguments = render_arguments(run.arguments,
                                 lambda hint, item: _placeholder(inputs.add(input_id(hint),
                                                                            item)))
    variables = run.environment.values(request.secrets)
    source_dir, staged = request.source_dir, None
    script, command = run.entry_script, run.command
    if run.compat == "batchai":
        staged = stage_with_launcher(request.source_dir)
        source_dir = staged / "snapshot"
        if script:
            variables["AMLCTL_BATCHAI_ENTRY_SCRIPT"] = script
        else:
            variables["AMLCTL_BATCHAI_COMMAND"] = command or ""
        variables["AMLCTL_BATCHAI_OUTPUTS"] = ",".join(run.outputs)
        if run.role_arguments:
            # the launcher expands $AZUREML_DATAREFERENCE_<ID>, exported below
            variables["AMLCTL_BATCHAI_ROLE_ARGS"] = json.dumps(
                {role: render_arguments(args, lambda hint, item: "$" + DATAREFERENCE
                                        + inputs.add(input_id(hint), item))
                 for role, args in run.role_arguments.items()})
        line = " ".join(["python", LAUNCHER, *(_quote(a) for a in arguments)])
    elif script:
        line = " ".join(["python", shlex.quote(script), *(_quote(a) for a in arguments)])
    else:
        line = " ".join([command or "", *(_quote(a) for a in arguments)])
    distribution, instances = _distribution(run.distribution)
    name = job_name(stack, request.name, request.spec_hash, request.supersedes)
    job = ml.command(
        name=name, display_name=request.name, experiment_name=run.experiment,
        command=inputs.exports() + line, code=str(source_dir),
        environment=build_environment(run, f"amlctl-{stack}-{request.name}", source_dir),
        environment_variables=variables, inputs=inputs.made or None,
        compute=run.compute, distribution=distribution, instance_count=instances,
        timeout=run.max_run_duration_seconds, tags=run_tags(request, stack))
    return BuiltJob(job, name, staged)


def _timestamp(value: Any) -> float | None:
    if not value:
        return None
    if hasattr(value, "timestamp"):
        return float(value.timestamp())
    from dateutil.parser import isoparse

    return isoparse(str(value)).timestamp()


def record_of(job: Any) -> RunRecord:
    """A RunRecord (the v1 backend's plain data) from an SDK v2 job."""
    created = getattr(job.creation_context, "created_at", None) if job.creation_context \
        else None
    compute = str(job.compute or "").rstrip("/").rsplit("/", 1)[-1] or None
    props = dict(job.properties or {})
    status = str(getattr(job.status, "value", job.status))  # an enum on some SDK paths
    return RunRecord(
        id=job.name, experiment=job.experiment_name or "",
        status=STATUS.get(status, status), tags=dict(job.tags or {}),
        created_at=_timestamp(created) or 0.0,
        started_at=_timestamp(props.get("StartTimeUtc")),
        ended_at=_timestamp(props.get("EndTimeUtc")),
        error=props.get("error") or None, target=compute)


__all__ = ["RUN_NAME_TAG", "BuiltJob", "build_job", "job_name", "record_of"]
