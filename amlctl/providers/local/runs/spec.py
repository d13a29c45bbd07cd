"""RunSpec: everything a local run needs once submitted, as plain JSON-serialisable data.

A spec is built from a manifest run (`build_spec`) before submission, with an empty run id
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
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from amlctl.providers.local.store import WorkspaceRow
from amlctl.runs.arguments import render_arguments
from amlctl.runs.errors import RunError

DATAREFERENCE_PREFIX = "AZUREML_DATAREFERENCE_"
MODES = ("mount", "download")
DISTRIBUTIONS = ("none", "parameter_server", "multi_worker", "mpi")


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


@dataclass(frozen=True)
class DistributionSpec:
    """How many processes of which role, over how many nodes."""

    type: str = "none"  # none | parameter_server | multi_worker | mpi
    node_count: int = 1
    worker_count: int = 1
    parameter_server_count: int = 0
    process_count_per_node: int = 1


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


# building from a manifest run -----------------------------------------------------------------


def build_spec(name: str, run: Any, *, workspace: WorkspaceRow, max_nodes: int,
               datastore_dirs: Mapping[str, Path], secrets: Mapping[str, str] | None = None
               ) -> RunSpec:
    """A spec (not yet submitted) from a manifest run.

    `run` is `amlctl.manifest.models.Run` or a mapping of the same shape; `datastore_dirs`
    maps every datastore name the workspace has (`default` included) to its local folder;
    `secrets` maps the names of secret environment variables to their values: those values
    replace the manifest's and are kept out of the stored spec (the manifest model wraps
    every env_vars value in SecretStr, so secrecy is known from `secrets` alone).
    """
    data = run.model_dump() if hasattr(run, "model_dump") else dict(run)
    where = f"run.{name}"
    inputs = _InputIds(where, datastore_dirs)
    for input_id, value in (data.get("inputs") or {}).items():
        inputs.add_named(input_id, value)
    arguments = _arguments(data.get("arguments") or [], inputs)
    role_arguments = {
        role: _arguments(args, inputs)
        for role, args in (data.get("role_arguments") or {}).items() if args
    }
    return RunSpec(
        run_id="",
        name=name,
        experiment=data["experiment"],
        compute=data["compute"],
        max_nodes=max_nodes,
        workspace_id=workspace.id,
        subscription_id=workspace.subscription_id,
        resource_group=workspace.resource_group,
        workspace_name=workspace.name,
        entry_script=data.get("entry_script"),
        command=data.get("command"),
        arguments=arguments,
        role_arguments=role_arguments,
        inputs=inputs.specs,
        outputs=tuple(data.get("outputs") or ()),
        distribution=_distribution(data.get("distribution") or {}),
        environment=_environment(data.get("environment") or {}, secrets or {}),
        compat=data.get("compat"),
        max_run_duration_seconds=data.get("max_run_duration_seconds"),
        use_gpu=bool(data.get("use_gpu", False)),
        secrets=dict(secrets or {}),
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

    def _spec(self, input_id: str, value: Mapping[str, Any]) -> InputSpec:
        datastore, path = str(value["datastore"]), str(value["path"])
        mode = str(value.get("mode") or "mount")
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

    def add_named(self, input_id: str, value: Mapping[str, Any]) -> None:
        self.specs[input_id] = self._spec(input_id, value)

    def add(self, hint: str, value: Mapping[str, Any]) -> InputSpec:
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


def _distribution(data: Mapping[str, Any]) -> DistributionSpec:
    kind = data.get("type") or "none"
    if kind not in DISTRIBUTIONS:
        raise RunError(f"unknown distribution type {kind!r}; expected one of {DISTRIBUTIONS}")
    if kind == "none":
        return DistributionSpec()
    return DistributionSpec(
        type=kind,
        node_count=int(data.get("node_count", 1)),
        worker_count=int(data.get("worker_count", 1)) if kind != "mpi" else 1,
        parameter_server_count=(int(data.get("parameter_server_count", 1))
                                if kind == "parameter_server" else 0),
        process_count_per_node=int(data.get("process_count_per_node", 1)) if kind == "mpi"
        else 1,
    )


def _plain(value: Any) -> str:
    return value.get_secret_value() if hasattr(value, "get_secret_value") else str(value)


def _environment(data: Mapping[str, Any], secrets: Mapping[str, str]) -> EnvironmentSpec:
    env_vars = data.get("env_vars") or {}
    return EnvironmentSpec(
        pip=tuple(data.get("pip") or ()),
        env_vars={k: _plain(v) for k, v in env_vars.items() if k not in secrets},
        secret_env_vars=tuple(sorted(secrets)),
        docker_image=data.get("docker_image"),
        conda_file=data.get("conda_file"),
    )
