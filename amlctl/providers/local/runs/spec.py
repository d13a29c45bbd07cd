"""RunSpec: everything a local run needs once submitted, as plain JSON-serialisable data.

A spec is built from a run definition (`build_spec`) before submission, with an empty run id
and no folders; `submit` fills those in. After that it is stored with the run and is all the
supervisor reads: later edits to the manifest or the source cannot change a submitted run.

Arguments are a list of strings. A DataInput among them becomes the reference
`$AZUREML_DATAREFERENCE_<id>`, as the SDK's `DataReference` prints itself, and stays symbolic
until a task is launched: only then is the input's local path known (a private copy in
download mode). An inline DataInput gets an input id from the flag it follows (`--input_data`
-> `input_data`), so the matching environment variable is set as well.

Secret environment values never enter the stored spec: `secrets` is left out of `to_dict()`
and travels to the supervisor in a file readable only by the user.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from amlctl.providers.local.store import WorkspaceRow
from amlctl.runs.arguments import render_arguments
from amlctl.runs.definition import (
    DISTRIBUTIONS,
    DataInputRef,
    RunDefinition,
    RunDistribution,
    RunEnvironment,
    definition_of,
)
from amlctl.runs.errors import RunError

DATAREFERENCE_PREFIX = "AZUREML_DATAREFERENCE_"
MODES = ("mount", "download")


@dataclass(frozen=True)
class InputSpec:
    """A datastore path handed to a run, and the local folder its datastore lives in."""

    id: str
    datastore: str
    path: str
    mode: str  # mount | download
    datastore_dir: str

    @property
    def source(self) -> Path:
        """The file or folder this input points at in its datastore."""
        return Path(self.datastore_dir, self.path)

    @property
    def reference(self) -> str:
        """How the input appears in an argument list until launch."""
        return f"${DATAREFERENCE_PREFIX}{self.id}"


# How many processes of which role over how many nodes: the backend-neutral record, stored as is.
DistributionSpec = RunDistribution


@dataclass(frozen=True)
class EnvironmentSpec:
    """What the tasks execute in. docker_image and conda_file are recorded, not used locally."""

    pip: tuple[str, ...] = ()
    env_vars: dict[str, str] = field(default_factory=dict)
    secret_env_vars: tuple[str, ...] = ()  # names only; values in RunSpec.secrets
    docker_image: str | None = None
    conda_file: str | None = None


@dataclass(frozen=True)
class RunSpec:
    """A run as submitted: identity, placement, program, inputs, outputs and environment."""

    run_id: str  # "" until submitted
    name: str  # the manifest's run name
    experiment: str
    compute: str
    max_nodes: int  # the compute's max_nodes when submitted
    workspace_id: int  # the local store's workspace row
    subscription_id: str
    resource_group: str
    workspace_name: str
    entry_script: str | None
    command: str | None
    arguments: tuple[str, ...] = ()
    role_arguments: dict[str, tuple[str, ...]] = field(default_factory=dict)
    inputs: dict[str, InputSpec] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    distribution: DistributionSpec = field(default_factory=DistributionSpec)
    environment: EnvironmentSpec = field(default_factory=EnvironmentSpec)
    compat: str | None = None  # batchai | None
    max_run_duration_seconds: int | None = None
    use_gpu: bool = False
    run_dir: str = ""  # "" until submitted
    snapshot_dir: str = ""
    secrets: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """The stored form: JSON-ready, without secret values."""
        data = asdict(self)
        del data["secrets"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], secrets: Mapping[str, str] | None = None
                  ) -> RunSpec:
        """Rebuild a spec from `to_dict()` output (and the secret values, if known)."""
        values = dict(data)
        values["arguments"] = tuple(values.get("arguments", ()))
        values["role_arguments"] = {
            role: tuple(args) for role, args in values.get("role_arguments", {}).items()
        }
        values["inputs"] = {k: InputSpec(**v) for k, v in values.get("inputs", {}).items()}
        values["outputs"] = tuple(values.get("outputs", ()))
        values["distribution"] = DistributionSpec(**values.get("distribution", {}))
        env = dict(values.get("environment", {}))
        env["pip"] = tuple(env.get("pip", ()))
        env["secret_env_vars"] = tuple(env.get("secret_env_vars", ()))
        values["environment"] = EnvironmentSpec(**env)
        values["secrets"] = dict(secrets or {})
        return cls(**values)

    def definition(self) -> dict[str, Any]:
        """What makes two runs the same run: program, arguments, inputs, outputs, placement,
        environment. Leaves out ids, folders, machine paths and secret values (secret names
        stay, so adding or removing one is a change). Feed it to `identity.spec_hash`."""
        data = self.to_dict()
        for key in ("run_id", "name", "max_nodes", "workspace_id", "subscription_id",
                    "resource_group", "workspace_name", "run_dir", "snapshot_dir"):
            del data[key]
        for spec in data["inputs"].values():
            del spec["datastore_dir"]
        return data

    def role_args(self, role: str) -> tuple[str, ...]:
        """The argument list a task of `role` gets: the common list, then its role's extras."""
        return self.arguments + self.role_arguments.get(role, ())


# building from a run definition ---------------------------------------------------------------


def build_spec(name: str, run: RunDefinition | Any, *, workspace: WorkspaceRow,
               max_nodes: int, datastore_dirs: Mapping[str, Path],
               secrets: Mapping[str, str] | None = None) -> RunSpec:
    """A spec (not yet submitted) from a run's definition.

    `run` is a RunDefinition (or a manifest run, or a mapping of its shape, made into one);
    `datastore_dirs` maps every datastore name the workspace has (`default` included) to its
    local folder; `secrets` maps the names of secret environment variables to their values:
    those values are kept out of the stored spec.
    """
    secrets = dict(secrets or {})
    definition = run if isinstance(run, RunDefinition) else definition_of(run, secrets)
    where = f"run.{name}"
    inputs = _InputIds(where, datastore_dirs)
    for input_id, value in definition.inputs.items():
        inputs.add_named(input_id, value)
    arguments = _arguments(definition.arguments, inputs)
    role_arguments = {
        role: _arguments(args, inputs)
        for role, args in definition.role_arguments.items() if args
    }
    return RunSpec(
        run_id="",
        name=name,
        experiment=definition.experiment,
        compute=definition.compute,
        max_nodes=max_nodes,
        workspace_id=workspace.id,
        subscription_id=workspace.subscription_id,
        resource_group=workspace.resource_group,
        workspace_name=workspace.name,
        entry_script=definition.entry_script,
        command=definition.command,
        arguments=arguments,
        role_arguments=role_arguments,
        inputs=inputs.specs,
        outputs=definition.outputs,
        distribution=_distribution(definition.distribution),
        environment=_environment(definition.environment, secrets),
        compat=definition.compat,
        max_run_duration_seconds=definition.max_run_duration_seconds,
        use_gpu=definition.use_gpu,
        secrets=secrets,
    )


def _identifier(hint: str) -> str:
    """An environment-variable-safe input id from a flag name: `--input-data` -> input_data."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", hint.lstrip("-")).strip("_")
    if not ident:
        return "input"
    return f"input_{ident}" if ident[0].isdigit() else ident


class _InputIds:
    """Input ids in use, so the same DataInput keeps one id and different ones never share."""

    def __init__(self, where: str, datastore_dirs: Mapping[str, Path]) -> None:
        self.where = where
        self.datastore_dirs = datastore_dirs
        self.specs: dict[str, InputSpec] = {}

    def _spec(self, input_id: str, value: DataInputRef) -> InputSpec:
        datastore, path, mode = value.datastore, value.path, value.mode
        if mode not in MODES:
            raise RunError(f"{self.where}: input {input_id}: mode must be mount or download, "
                           f"not {mode!r}")
        pure = PurePosixPath(path)
        if pure.is_absolute() or ".." in pure.parts:
            raise RunError(f"{self.where}: input {input_id}: path {path!r} must stay inside "
                           f"datastore {datastore!r} (no absolute path, no '..')")
        folder = self.datastore_dirs.get(datastore)
        if folder is None:
            known = ", ".join(sorted(self.datastore_dirs)) or "none"
            raise RunError(f"{self.where}: input {input_id}: the workspace has no datastore "
                           f"{datastore!r} (it has: {known})")
        # absolute: tasks resolve it from the run's folder, not from the caller's
        return InputSpec(input_id, datastore, path, mode, str(Path(folder).resolve()))

    def add_named(self, input_id: str, value: DataInputRef) -> None:
        self.specs[input_id] = self._spec(input_id, value)

    def add(self, hint: str, value: DataInputRef) -> InputSpec:
        base = _identifier(hint)
        candidate, n = base, 2
        while True:
            spec = self._spec(candidate, value)
            existing = self.specs.get(candidate)
            if existing is None or existing == spec:
                self.specs[candidate] = spec
                return spec
            candidate, n = f"{base}_{n}", n + 1


def _arguments(value: Any, inputs: _InputIds) -> tuple[str, ...]:
    """A flag map or a list as the argument list every role gets."""
    return tuple(render_arguments(value, lambda hint, item: inputs.add(hint, item).reference))


def _distribution(given: RunDistribution) -> DistributionSpec:
    """The distribution with only the counts its type uses (the rest at their defaults)."""
    kind = given.type
    if kind not in DISTRIBUTIONS:
        raise RunError(f"unknown distribution type {kind!r}; expected one of {DISTRIBUTIONS}")
    if kind == "none":
        return DistributionSpec()
    return replace(given, worker_count=given.worker_count if kind != "mpi" else 1,
                   parameter_server_count=given.parameter_server_count
                   if kind == "parameter_server" else 0,
                   process_count_per_node=given.process_count_per_node if kind == "mpi" else 1)


def _environment(given: RunEnvironment, secrets: Mapping[str, str]) -> EnvironmentSpec:
    return EnvironmentSpec(
        pip=given.pip,
        env_vars={k: v for k, v in given.env_vars.items() if v is not None and k not in secrets},
        secret_env_vars=tuple(sorted(secrets)),
        docker_image=given.docker_image,
        conda_file=given.conda_file,
    )
