"""Pydantic models of the amlctl manifest: data only, no logic beyond field-level checks.

Every field carries a description: it feeds the JSON Schema (editor completion) and the docs.
Cross-resource rules (references, node counts, paths on disk) live in `validate.py`.

No `from __future__ import annotations` here: pydantic would then have to eval() every field's
annotation string when it builds a class, about a tenth of the cost of importing this module,
which every command that reads a manifest pays.
"""

import base64
import binascii
import contextvars
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

# id(raw mapping) -> model class that read it; lets the loader suggest the closest field name
# for an unknown key ("did you mean ...") without pydantic losing the other errors.
MODEL_OF_MAPPING: contextvars.ContextVar[dict[int, type[BaseModel]] | None] = (
    contextvars.ContextVar("MODEL_OF_MAPPING", default=None)
)

NAME_DESCRIPTION = "Named map: each key is the resource's name, as it appears in Azure ML."


class StrictModel(BaseModel):
    """Base of every manifest model: unknown keys are errors, values are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _remember_model(cls, data: Any) -> Any:
        registry = MODEL_OF_MAPPING.get()
        if registry is not None and isinstance(data, dict):
            registry[id(data)] = cls
        return data


# Upper bounds of counts: a typo or a hostile value must not start unbounded processes (the
# local backend runs each process on this machine) nor overflow a stored integer.
MAX_PROCESSES = 64  # workers, parameter servers, processes per node of one run
MAX_RUN_NODES = 64  # nodes one run spreads over
MAX_CLUSTER_NODES = 10_000  # nodes of a cluster (far above any core quota)
MAX_SECONDS = 2**31 - 1  # durations, in seconds (68 years)


def _no_bool(value: Any) -> Any:
    """`true` is not the number 1 in a manifest (pydantic's lax mode would take it as 1)."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


def _known_backend(value: str) -> str:
    """A registered backend's name (amlctl.providers.BACKENDS, read now, not at import)."""
    from amlctl.providers import BACKENDS

    if value not in BACKENDS:
        names = [repr(n) for n in BACKENDS]
        expected = f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]
        raise PydanticCustomError("literal_error", "Input should be {expected}",
                                  {"expected": expected})
    return value


class _BackendSchema:
    """The JSON Schema of `backend`: an enum of the backends registered when it is made."""

    def __get_pydantic_json_schema__(self, core_schema: Any, handler: GetJsonSchemaHandler
                                     ) -> dict[str, Any]:
        from amlctl.providers import BACKENDS

        return {"enum": list(BACKENDS), "type": "string"}

    def reference_type(self) -> str:
        """How docs/manifest.md names the type: the choices."""
        from amlctl.providers import BACKENDS

        return " | ".join(BACKENDS)


BackendName = Annotated[str, AfterValidator(_known_backend), _BackendSchema()]


def _version_one(value: Any) -> Any:
    """Only the integer 1: `version: true` and `version: 1.0` are not versions."""
    if type(value) is not int:
        raise PydanticCustomError("literal_error", "Input should be 1", {"expected": "1"})
    return value


def count(default: Any = ..., *, ge: int = 1, le: int = MAX_PROCESSES, description: str) -> Any:
    """A bounded integer field; the bound is in the schema and in the error message."""
    return Field(default, ge=ge, le=le, description=f"{description} (at most {le}).")


Count = Annotated[int, BeforeValidator(_no_bool)]


def _scalar_to_str(value: Any) -> Any:
    """A number or boolean where a string is wanted becomes its YAML spelling (123 -> "123",
    true -> "true"), as tag and variable values are strings in Azure; anything else is left
    for the type check."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


# A string of a string map (tags, env_vars) also written as a number or boolean.
MapStr = Annotated[
    str,
    BeforeValidator(_scalar_to_str),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]
Tags = Annotated[
    dict[str, MapStr],
    Field(description="Azure tags (name to value; numbers and booleans become strings)."),
]
Secret = Annotated[
    SecretStr | None,
    Field(description="Secret value; write it as \"{{ secret_env('NAME') }}\". Never printed."),
]


class Workspace(StrictModel):
    """The Azure ML workspace every other resource lives in."""

    name: str = Field(description="Workspace name (3-33 chars, letters, digits, - and _).")
    subscription_id: str = Field(description="Azure subscription id (a GUID).")
    resource_group: str = Field(description="Resource group holding the workspace.")
    location: str = Field(description="Azure region, e.g. westeurope.")
    create_resource_group: bool = Field(
        False, description="Create the resource group if it does not exist."
    )
    tags: Tags = {}
    prevent_destroy: bool = Field(
        False, description="Fail any plan that would delete or replace this workspace."
    )


class Vnet(StrictModel):
    """The virtual network subnet an AmlCompute cluster joins."""

    resource_group: str = Field(description="Resource group of the virtual network.")
    name: str = Field(description="Virtual network name.")
    subnet: str = Field(description="Subnet name inside the virtual network.")


class Compute(StrictModel):
    """An AmlCompute cluster (autoscaling pool of VMs)."""

    vm_size: str = Field(description="Azure VM size, e.g. Standard_NC6s_v3.")
    vm_priority: Literal["dedicated", "lowpriority"] = Field(
        "dedicated", description="dedicated, or lowpriority (cheaper, can be preempted)."
    )
    min_nodes: Count = count(0, ge=0, le=MAX_CLUSTER_NODES,
                             description="Nodes kept even when idle")
    max_nodes: Count = count(ge=1, le=MAX_CLUSTER_NODES,
                             description="Most nodes the cluster scales up to")
    idle_seconds_before_scaledown: Count = count(
        1800, ge=0, le=MAX_SECONDS,
        description="Idle time before the cluster scales back to min_nodes"
    )
    vnet: Vnet | None = Field(None, description="Join this subnet (optional).")
    tags: Tags = {}
    description: str | None = Field(None, description="Free-text description.")
    admin_username: str | None = Field(None, description="SSH admin user on the nodes.")
    admin_user_password: Secret = None
    admin_user_ssh_key: str | None = Field(None, description="SSH public key of the admin user.")
    prevent_destroy: bool = Field(
        False, description="Fail any plan that would delete or replace this cluster."
    )


def _storage_key(value: SecretStr | None) -> SecretStr | None:
    """An account key is base64 as the portal shows it; anything else fails here, in a
    millisecond, instead of as signing errors retried against the service (the value is
    never quoted back)."""
    from amlctl.manifest.render import REDACTED

    if value is None or value.get_secret_value() in ("", REDACTED):
        return value  # an unset secret_env() while validating, or a rendered manifest
    try:
        decoded = base64.b64decode(value.get_secret_value().strip(), validate=True)
    except (binascii.Error, ValueError):
        decoded = b""
    if not decoded:
        raise ValueError("not a storage account key: expected base64 text (the 88-character "
                         "key of the account's Access keys page)")
    return value


StorageKey = Annotated[Secret, AfterValidator(_storage_key)]


class BlobDatastore(StrictModel):
    """An Azure Blob container registered as a datastore."""

    type: Literal["azure_blob"] = Field(description="azure_blob")
    account_name: str = Field(description="Storage account name.")
    container_name: str = Field(description="Blob container name.")
    account_key: StorageKey = None
    sas_token: Secret = None
    endpoint: str | None = Field(None, description="Storage endpoint suffix (core.windows.net).")
    prevent_destroy: bool = Field(False, description="Fail any plan that would delete it.")


class FileDatastore(StrictModel):
    """An Azure Files share registered as a datastore."""

    type: Literal["azure_file"] = Field(description="azure_file")
    account_name: str = Field(description="Storage account name.")
    share_name: str = Field(description="File share name.")
    account_key: StorageKey = None
    sas_token: Secret = None
    prevent_destroy: bool = Field(False, description="Fail any plan that would delete it.")


Datastore = Annotated[BlobDatastore | FileDatastore, Field(discriminator="type")]


class Upload(StrictModel):
    """A local folder kept in sync with a path of a datastore."""

    datastore: str = Field(description="Datastore name; `default` is the workspace default.")
    src_dir: str = Field(description="Local folder, relative to the manifest's folder.")
    target_path: str = Field(description="Path inside the datastore (no `..`, not absolute).")
    delete_extra: bool = Field(
        False, description="Delete remote files under target_path that are not present locally."
    )
    exclude: list[str] = Field([], description="Glob patterns of files not to upload.")
    prevent_destroy: bool = Field(False, description="Fail any plan that would delete it.")


class Experiment(StrictModel):
    """An experiment: the folder runs are grouped in."""

    tags: Tags = {}


class DataInput(StrictModel):
    """A datastore path handed to a run, mounted or downloaded."""

    datastore: str = Field(description="Datastore name; `default` is the workspace default.")
    path: str = Field(description="Path inside the datastore.")
    mode: Literal["mount", "download"] = Field("mount", description="mount or download.")


Scalar = str | int | float | bool
ArgValue = Scalar | DataInput  # smart union: true stays a bool, "true" a string


class ParameterServer(StrictModel):
    """TensorFlow parameter-server training: ps and worker processes with TF_CONFIG."""

    type: Literal["parameter_server"] = Field(description="parameter_server")
    node_count: Count = count(1, le=MAX_RUN_NODES, description="Nodes the run spreads over")
    worker_count: Count = count(1, description="Worker processes in all")
    parameter_server_count: Count = count(1, description="Parameter-server processes")


class MultiWorker(StrictModel):
    """TensorFlow multi-worker training: workers only, with TF_CONFIG."""

    type: Literal["multi_worker"] = Field(description="multi_worker")
    node_count: Count = count(1, le=MAX_RUN_NODES, description="Nodes the run spreads over")
    worker_count: Count = count(1, description="Worker processes in all")


class Mpi(StrictModel):
    """MPI launch (Horovod and the like)."""

    type: Literal["mpi"] = Field(description="mpi")
    node_count: Count = count(1, le=MAX_RUN_NODES, description="Nodes the run spreads over")
    process_count_per_node: Count = count(1, description="Processes on each node")


class SingleProcess(StrictModel):
    """One process on one node (the default)."""

    type: Literal["none"] = Field(description="none")


Distribution = Annotated[
    ParameterServer | MultiWorker | Mpi | SingleProcess, Field(discriminator="type")
]


def _secret_if_sensitive(value: Any) -> Any:
    """A value that came from secret_env() becomes a SecretStr; a number or boolean its
    string; any other stays plain."""
    from amlctl.manifest.template import SensitiveStr

    return SecretStr(str(value)) if isinstance(value, SensitiveStr) else _scalar_to_str(value)


EnvValue = Annotated[
    str | SecretStr, Field(union_mode="left_to_right"), BeforeValidator(_secret_if_sensitive),
    WithJsonSchema({"type": ["string", "number", "boolean"]}),
]


class Environment(StrictModel):
    """What the run's processes execute in."""

    pip: list[str] = Field([], description="pip requirements installed for the run.")
    conda_file: str | None = Field(None, description="Conda environment file (relative path).")
    docker_image: str | None = Field(None, description="Base docker image (Azure backend).")
    env_vars: dict[str, EnvValue] = Field(
        {}, description="Environment variables; values from secret_env() stay secret."
    )


class RoleArguments(StrictModel):
    """Extra arguments per role (Batch AI jobs had one command line per role)."""

    ps: list[ArgValue] = Field([], description="Arguments only parameter servers get.")
    worker: list[ArgValue] = Field([], description="Arguments only workers get.")


class Run(StrictModel):
    """A script run in an experiment on a compute; submitted once per distinct definition."""

    experiment: str = Field(description="Experiment name (a key of `experiments`).")
    compute: str = Field(description="Compute name (a key of `computes`).")
    source_directory: str = Field(description="Folder snapshotted for the run (relative).")
    entry_script: str | None = Field(None, description="Script inside source_directory.")
    command: str | None = Field(None, description="Command line, instead of an entry_script.")
    arguments: list[ArgValue] | dict[str, ArgValue | None] = Field(
        [], description="Argument list, or a map of flag -> value (null: a bare flag)."
    )
    inputs: dict[str, DataInput] = Field(
        {}, description="Named datastore inputs (AZUREML_DATAREFERENCE_<ID>)."
    )
    outputs: list[str] = Field([], description="Output folder ids under the run's outputs/.")
    distribution: Distribution = Field(
        default_factory=lambda: SingleProcess(type="none"),
        description="parameter_server, multi_worker, mpi or none.",
    )
    environment: Environment = Field(default_factory=Environment, description="Environment.")
    use_gpu: bool = Field(False, description="Use the GPU base image and GPU device.")
    compat: Literal["batchai"] | None = Field(
        None, description="batchai: also set the AZ_BATCHAI_* variables of Batch AI jobs."
    )
    role_arguments: RoleArguments | None = Field(
        None, description="Per-role extra arguments (only with compat: batchai)."
    )
    max_run_duration_seconds: Count | None = count(
        None, le=MAX_SECONDS, description="Cancel the run when it runs longer than this"
    )
    tags: Tags = {}


class State(StrictModel):
    """Where the azure backend keeps state (default: the workspace's default datastore)."""

    account: str = Field(
        pattern=r"^[a-z0-9]{3,24}$",
        description="Storage account holding the state blob (amlctl needs Storage Blob Data "
                    "Contributor on it, or its key in AMLCTL_STATE_ACCESS_KEY).")
    container: str = Field(
        pattern=r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$",
        description="Existing blob container of that account.")
    key: str | None = Field(
        None, pattern=r"^[A-Za-z0-9._-][A-Za-z0-9._/-]{0,511}$",
        description="Blob name of the state (default `amlctl-state/<name>.json`).")

    @field_validator("key")
    @classmethod
    def _no_dot_dot(cls, value: str | None) -> str | None:
        if value is not None and ".." in value.split("/"):
            raise ValueError("must not contain a '..' path component")
        return value
    endpoint: str = Field("core.windows.net", description="Storage endpoint suffix.")


class Manifest(StrictModel):
    """The whole stack: one workspace and everything amlctl manages in it."""

    version: Annotated[Literal[1], BeforeValidator(_version_one)] = Field(
        description="Manifest format version (1)."
    )
    name: str = Field(description="Stack name; tag amlctl.stack on everything amlctl creates.")
    backend: BackendName = Field(
        "local", description="local, azure (SDK v1: azureml-sdk) or azure-v2 (SDK v2: "
        "azure-ai-ml)."
    )
    state: State | None = Field(
        None, description="Where the azure backend keeps the stack's state and lock (optional; "
                          "default: the workspace's default blob datastore).")
    vars: dict[str, Any] = Field({}, description="Template variables (defaults).")
    workspace: Workspace = Field(description="The workspace.")
    computes: dict[str, Compute] = Field({}, description=NAME_DESCRIPTION)
    datastores: dict[str, Datastore] = Field({}, description=NAME_DESCRIPTION)
    uploads: dict[str, Upload] = Field({}, description=NAME_DESCRIPTION)
    experiments: dict[str, Experiment] = Field({}, description=NAME_DESCRIPTION)
    runs: dict[str, Run] = Field({}, description=NAME_DESCRIPTION)
