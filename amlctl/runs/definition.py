"""A run's definition as every backend receives it: typed, frozen, backend-neutral data.

The engine turns a manifest run into a `RunDefinition` (`definition_of`); the local backend
builds its process spec from it, the Azure backends a ScriptRunConfig (v1) or a command job
(v2). Secret values never enter it: a secret environment variable is listed with the value
None, and its value travels beside it (`RunRequest.secrets`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DISTRIBUTIONS = ("none", "parameter_server", "multi_worker", "mpi")


@dataclass(frozen=True)
class DataInputRef:
    """A datastore path handed to a run."""

    datastore: str
    path: str
    mode: str = "mount"  # mount | download


Arg = str | int | float | bool | DataInputRef
# A list, or a flag map (flag -> value; None: a bare flag), as the manifest gives them.
Arguments = tuple[Arg, ...] | Mapping[str, Arg | None]


@dataclass(frozen=True)
class RunDistribution:
    """How many processes of which role, over how many nodes."""

    type: str = "none"  # none | parameter_server | multi_worker | mpi
    node_count: int = 1
    worker_count: int = 1
    parameter_server_count: int = 0
    process_count_per_node: int = 1


@dataclass(frozen=True)
class RunEnvironment:
    """What the run's processes execute in."""

    pip: tuple[str, ...] = ()
    conda_file: str | None = None
    docker_image: str | None = None
    # name -> value; None for a secret, whose value is in the request's secrets
    env_vars: Mapping[str, str | None] = field(default_factory=dict)

    def values(self, secrets: Mapping[str, str]) -> dict[str, str]:
        """Every variable with its value, secrets filled in from `secrets`."""
        return {name: secrets.get(name, "") if value is None else value
                for name, value in self.env_vars.items()}


@dataclass(frozen=True)
class RunDefinition:
    """Program, arguments, inputs, placement and environment of one run."""

    experiment: str
    compute: str  # the compute's name (its attributes: RunRequest.compute)
    entry_script: str | None = None
    command: str | None = None
    arguments: Arguments = ()
    inputs: Mapping[str, DataInputRef] = field(default_factory=dict)
    outputs: tuple[str, ...] = ()
    distribution: RunDistribution = field(default_factory=RunDistribution)
    environment: RunEnvironment = field(default_factory=RunEnvironment)
    use_gpu: bool = False
    compat: str | None = None  # batchai | None
    # role (ps, worker) -> extra arguments; {} when the manifest gives none
    role_arguments: Mapping[str, tuple[Arg, ...]] = field(default_factory=dict)
    max_run_duration_seconds: int | None = None
    tags: Mapping[str, str] = field(default_factory=dict)


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else value


def _is_input(value: Any) -> bool:
    return isinstance(value, Mapping) and "datastore" in value and "path" in value


def as_data_input(value: Any) -> DataInputRef:
    """A DataInputRef from a manifest DataInput (or a mapping of its shape)."""
    if isinstance(value, DataInputRef):
        return value
    data = _plain(value)
    return DataInputRef(str(data["datastore"]), str(data["path"]),
                        str(data.get("mode") or "mount"))


def _arg(value: Any) -> Arg:
    if isinstance(value, DataInputRef):
        return value
    value = _plain(value)
    return as_data_input(value) if _is_input(value) else value


def _arguments(value: Any) -> Arguments:
    if isinstance(value, Mapping):
        return {str(flag): None if item is None else _arg(item) for flag, item in value.items()}
    return tuple(_arg(item) for item in value or ())


def _distribution(data: Mapping[str, Any]) -> RunDistribution:
    kind = data.get("type") or "none"
    if kind == "none":
        return RunDistribution()
    return RunDistribution(
        type=str(kind), node_count=int(data.get("node_count", 1)),
        worker_count=int(data.get("worker_count", 1)),
        parameter_server_count=int(data.get("parameter_server_count", 1))
        if kind == "parameter_server" else 0,
        process_count_per_node=int(data.get("process_count_per_node", 1)))


def _environment(data: Mapping[str, Any], secrets: Mapping[str, str]) -> RunEnvironment:
    env_vars: dict[str, str | None] = {}
    for name, value in (data.get("env_vars") or {}).items():
        secret = name in secrets or hasattr(value, "get_secret_value")
        env_vars[str(name)] = None if secret else str(value)
    return RunEnvironment(pip=tuple(data.get("pip") or ()), conda_file=data.get("conda_file"),
                          docker_image=data.get("docker_image"), env_vars=env_vars)


def definition_of(run: Any, secrets: Mapping[str, str] | None = None) -> RunDefinition:
    """The definition of a manifest run (`amlctl.manifest.models.Run`, or a mapping of the
    same shape). `secrets`: the names (and values) of its secret environment variables;
    their values stay out of the definition."""
    data = dict(run) if isinstance(run, Mapping) else {
        name: getattr(run, name) for name in type(run).model_fields}
    roles = _plain(data.get("role_arguments")) or {}
    return RunDefinition(
        experiment=str(data["experiment"]),
        compute=str(data["compute"]),
        entry_script=data.get("entry_script"),
        command=data.get("command"),
        arguments=_arguments(data.get("arguments") or []),
        inputs={str(k): as_data_input(v) for k, v in (data.get("inputs") or {}).items()},
        outputs=tuple(data.get("outputs") or ()),
        distribution=_distribution(_plain(data.get("distribution")) or {}),
        environment=_environment(_plain_env(data.get("environment")), secrets or {}),
        use_gpu=bool(data.get("use_gpu", False)),
        compat=data.get("compat"),
        role_arguments={str(role): tuple(_arg(a) for a in args or ())
                        for role, args in roles.items()},
        max_run_duration_seconds=data.get("max_run_duration_seconds"),
        tags={str(k): str(v) for k, v in (data.get("tags") or {}).items()},
    )


def _plain_env(env: Any) -> Mapping[str, Any]:
    """The environment as a mapping, its SecretStr values kept as they are (model_dump keeps
    them too; a secret's value is never read here)."""
    if env is None:
        return {}
    if isinstance(env, Mapping):
        return env
    return {name: getattr(env, name) for name in type(env).model_fields}
