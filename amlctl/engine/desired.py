"""Desired state: the manifest turned into one attribute dict per address, with dependencies.

Attributes use the manifest's vocabulary, which providers normalise live values into, so the
differ compares like with like. Secret values never enter `attrs` (only their fingerprint);
they travel separately in `secrets` to the provider call that needs them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, SecretStr

from amlctl.engine.address import make
from amlctl.manifest.loader import LoadedManifest
from amlctl.manifest.validate import DEFAULT_DATASTORE
from amlctl.providers.base import fingerprint

if TYPE_CHECKING:
    from amlctl.providers.records import RunRequest

# Fields that steer amlctl itself and are not part of the object in the workspace.
_NOT_LIVE = {"prevent_destroy"}


@dataclass(frozen=True)
class Desired:
    """One resource as the manifest wants it."""

    address: str
    kind: str
    name: str
    attrs: dict[str, Any]
    deps: frozenset[str] = frozenset()
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
    prevent_destroy: bool = False
    model: Any = field(default=None, repr=False, compare=False)


def desired_state(loaded: LoadedManifest, key: bytes | None = None) -> dict[str, Desired]:
    """Every resource of the manifest by address (secrets fingerprinted with `key`, the
    stack's fingerprint key)."""
    m = loaded.manifest
    out: dict[str, Desired] = {}
    ws = "workspace"
    out[ws] = Desired(
        ws, "workspace", m.workspace.name,
        _attrs(m.workspace, exclude={"create_resource_group"}, key=key)[0],
        prevent_destroy=m.workspace.prevent_destroy, model=m.workspace,
    )
    for name, ds in m.datastores.items():
        attrs, secrets = _attrs(ds, key=key)
        out[make("datastore", name)] = Desired(
            make("datastore", name), "datastore", name, attrs, frozenset({ws}), secrets,
            ds.prevent_destroy, ds,
        )
    for name, compute in m.computes.items():
        attrs, secrets = _attrs(compute, key=key)
        out[make("compute", name)] = Desired(
            make("compute", name), "compute", name, attrs, frozenset({ws}), secrets,
            compute.prevent_destroy, compute,
        )
    for name, experiment in m.experiments.items():
        out[make("experiment", name)] = Desired(
            make("experiment", name), "experiment", name, _attrs(experiment, key=key)[0],
            frozenset({ws}), model=experiment,
        )
    for name, upload in m.uploads.items():
        attrs = {
            "datastore": upload.datastore,
            "target_path": upload.target_path.strip("/"),
            "delete_extra": upload.delete_extra,
            "exclude": list(upload.exclude),
            # Relative to the manifest's folder, normalised: the same plan from any checkout
            # path (a saved plan travels between CI jobs), however the path was spelt.
            "src_dir": Path(os.path.normpath(upload.src_dir)).as_posix(),
        }
        out[make("upload", name)] = Desired(
            make("upload", name), "upload", name, attrs,
            frozenset({ws, *_datastore_deps([upload.datastore])}),
            prevent_destroy=upload.prevent_destroy, model=upload,
        )
    for name, run in m.runs.items():
        out[make("run", name)] = _run(loaded, name, run)
    return out


def _run(loaded: LoadedManifest, name: str, run: Any) -> Desired:
    from amlctl.runs.identity import source_digest, spec_hash

    # Unkeyed: the spec hash is a tag on the run in the workspace, and must not change when
    # the state (and so the fingerprint key) does.
    definition, secrets = _attrs(run, exclude={"tags"})
    source_dir = loaded.root / run.source_directory
    digest = source_digest(source_dir)
    run_hash = spec_hash(definition, digest, secret_paths=secrets)  # a rotated key: same run
    datastores = _run_datastores(run)
    # Runs come after every upload (DESIGN: uploads, then runs): a command line may read
    # uploaded data without naming the datastore in a way amlctl can see.
    uploads = {make("upload", up_name) for up_name in loaded.manifest.uploads}
    attrs = {
        "experiment": run.experiment,
        "compute": run.compute,
        "spec_hash": run_hash,
        "source_digest": digest[:16],
    }
    deps = {"workspace", make("experiment", run.experiment), make("compute", run.compute),
            *_datastore_deps(datastores), *uploads}
    env_secrets = {k: v for k, v in secrets.items() if k.startswith("environment.env_vars.")}
    return Desired(make("run", name), "run", name, attrs, frozenset(deps),
                   {k.rsplit(".", 1)[1]: v for k, v in env_secrets.items()}, model=run)


def run_request(loaded: LoadedManifest, want: Desired, supersedes: str | None = None
                ) -> RunRequest:
    """What a provider needs to submit the run `want`: its definition as backend-neutral
    data, the folder it snapshots, and the attributes of its compute."""
    from amlctl.providers.records import ComputeRef, RunRequest
    from amlctl.runs.definition import definition_of

    run = want.model
    compute = loaded.manifest.computes[run.compute]
    return RunRequest(
        name=want.name, spec_hash=want.attrs["spec_hash"],
        run=definition_of(run, want.secrets), source_dir=loaded.root / run.source_directory,
        compute=ComputeRef(run.compute, compute.vm_size, compute.vm_priority,
                           compute.min_nodes, compute.max_nodes),
        secrets=want.secrets, supersedes=supersedes)


def secret_env_fingerprints(secrets: dict[str, str], key: bytes | None) -> dict[str, str]:
    """Keyed fingerprints of a run's secret environment variables: what the state records of
    a submission's secrets, so a rotation shows in the plan without storing a secret."""
    from amlctl.providers.base import fingerprint

    return {name: fingerprint(value, key) for name, value in sorted(secrets.items())}


def _run_datastores(run: Any) -> set[str]:
    from amlctl.manifest.models import DataInput

    found = {i.datastore for i in run.inputs.values()}
    args = run.arguments.values() if isinstance(run.arguments, dict) else run.arguments
    found.update(a.datastore for a in args if isinstance(a, DataInput))
    return found


def _datastore_deps(names: Any) -> set[str]:
    return {make("datastore", n) for n in names if n != DEFAULT_DATASTORE}


def _attrs(model: Any, exclude: set[str] | None = None, key: bytes | None = None
           ) -> tuple[dict[str, Any], dict[str, str]]:
    """A model as plain attributes (secrets fingerprinted) and its secret values by path."""
    secrets: dict[str, str] = {}
    skip = _NOT_LIVE | (exclude or set())
    attrs = {
        name: _plain(getattr(model, name), name, secrets, key)
        for name in type(model).model_fields
        if name not in skip
    }
    return attrs, secrets


def _plain(value: Any, path: str, secrets: dict[str, str], key: bytes | None) -> Any:
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        secrets[path] = secret
        return fingerprint(secret, key)
    if isinstance(value, BaseModel):
        return {k: _plain(getattr(value, k), f"{path}.{k}", secrets, key)
                for k in type(value).model_fields}
    if isinstance(value, dict):
        return {k: _plain(v, f"{path}.{k}", secrets, key) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, f"{path}.{i}", secrets, key) for i, v in enumerate(value)]
    return value


def source_dir_of(loaded: LoadedManifest, run_name: str) -> Path:
    """The folder a run snapshots."""
    return loaded.root / loaded.manifest.runs[run_name].source_directory
