"""Checks across resources that a single model cannot make: references, counts, names, paths."""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from pydantic import SecretStr

from amlctl.errors import Problem
from amlctl.manifest.template import SensitiveStr

if TYPE_CHECKING:
    from amlctl.manifest.loader import LoadedManifest
    from amlctl.manifest.models import DataInput, Manifest

DEFAULT_DATASTORE = "default"
MAX_PROCESSES_PER_NODE = 16  # processes of one run on one node; the largest VMs have 8 GPUs
ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # what a POSIX shell can export

# Azure ML naming rules, as the service enforces them.
NAME_RULES: dict[str, tuple[re.Pattern[str], str]] = {
    "workspace": (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{2,32}$"),
        "3-33 characters: letters, digits, '-' and '_', starting with a letter or digit",
    ),
    "compute": (
        re.compile(r"^[A-Za-z][A-Za-z0-9-]{1,15}$"),
        "2-16 characters: letters, digits and '-', starting with a letter",
    ),
    "experiment": (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,255}$"),
        "1-256 characters: letters, digits, '-' and '_', starting with a letter or digit",
    ),
    "datastore": (
        re.compile(r"^[A-Za-z0-9_]{1,255}$"),
        "letters, digits and '_' only",
    ),
    "upload": (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        "1-64 characters: letters, digits, '-', '_' and '.', starting with a letter or digit",
    ),
    "run": (
        re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"),
        "1-64 characters: letters, digits, '-', '_' and '.', starting with a letter or digit",
    ),
    "input": (
        re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"),
        "an environment-variable suffix: letters, digits and '_', not starting with a digit",
    ),
}


def check_manifest(loaded: LoadedManifest) -> list[Problem]:
    """Every cross-resource problem of a manifest (errors and warnings)."""
    checker = _Checker(loaded)
    checker.run()
    return checker.problems


class _Checker:
    def __init__(self, loaded: LoadedManifest) -> None:
        self.loaded = loaded
        self.m: Manifest = loaded.manifest
        self.problems: list[Problem] = []

    def error(self, path: tuple[str | int, ...], message: str) -> None:
        from amlctl.manifest.loader import problem_at

        self.problems.append(
            problem_at(str(self.loaded.path), self.loaded.positions, path, message)
        )

    def warn(self, path: tuple[str | int, ...], message: str) -> None:
        from amlctl.manifest.loader import problem_at

        self.problems.append(
            problem_at(str(self.loaded.path), self.loaded.positions, path, message, "warning")
        )

    def run(self) -> None:
        self.check_secrets_placement()
        if self.problems:
            # the other checks quote the values they refuse: one of them is a secret
            return
        self.check_names()
        self.check_computes()
        self.check_uploads()
        self.check_runs()

    # names ---------------------------------------------------------------------------------

    def check_name(self, kind: str, name: str, path: tuple[str | int, ...]) -> None:
        pattern, rule = NAME_RULES[kind]
        if not pattern.match(name):
            self.error(path, f"invalid {kind} name {name!r}: {rule}")

    def check_names(self) -> None:
        self.check_name("workspace", self.m.workspace.name, ("workspace", "name"))
        for kind, section in (
            ("compute", "computes"), ("datastore", "datastores"), ("upload", "uploads"),
            ("experiment", "experiments"), ("run", "runs"),
        ):
            for name in getattr(self.m, section):
                self.check_name(kind, name, (section, name))
        if DEFAULT_DATASTORE in self.m.datastores:
            self.error(("datastores", DEFAULT_DATASTORE),
                       "'default' is the workspace default datastore; it needs no entry")

    def check_secrets_placement(self) -> None:
        """A secret_env() value may only land in a secret field, so it can never be printed."""
        for path in _sensitive_paths(self.loaded.data, ()):
            if path[0] == "vars":
                continue
            if not isinstance(_model_value(self.m, path), SecretStr):
                self.error(path, "secret_env() may only be used for secret fields "
                                 "(account_key, sas_token, admin_user_password, env_vars)")

    # computes ------------------------------------------------------------------------------

    def check_computes(self) -> None:
        if not self.m.computes:
            return
        # the VM size catalogue (a JSON file) is read only for a manifest with computes
        from amlctl.manifest import vmsizes

        for name, compute in self.m.computes.items():
            path = ("computes", name)
            if compute.min_nodes > compute.max_nodes:
                self.error((*path, "min_nodes"), f"min_nodes ({compute.min_nodes}) is greater "
                                                 f"than max_nodes ({compute.max_nodes})")
            size = vmsizes.lookup(compute.vm_size)
            if size is None:
                hint = vmsizes.closest(compute.vm_size)
                self.warn((*path, "vm_size"), f"unknown VM size {compute.vm_size!r}"
                          + (f" (did you mean '{hint}'?)" if hint else "")
                          + "; Azure will reject it if the region does not offer it")
            elif size.retired:
                self.warn((*path, "vm_size"), f"{size.name} belongs to the {size.series} "
                          f"series, retired on {size.retired}; move to {size.successor}")

    # uploads -------------------------------------------------------------------------------

    def check_datastore_ref(self, name: str, path: tuple[str | int, ...]) -> None:
        if name != DEFAULT_DATASTORE and name not in self.m.datastores:
            self.error(path, f"unknown datastore {name!r}"
                             + _choices(name, [DEFAULT_DATASTORE, *self.m.datastores]))

    def check_inside_datastore(self, value: str, path: tuple[str | int, ...]) -> None:
        pure = PurePosixPath(value.replace("\\", "/"))
        if pure.is_absolute() or re.match(r"^[A-Za-z]:", value):
            self.error(path, f"{value!r} must be relative to the datastore, not absolute")
        elif ".." in pure.parts:
            self.error(path, f"{value!r} must stay inside the datastore (no '..')")

    def check_local_dir(self, value: str, path: tuple[str | int, ...]) -> bool:
        """True if `value` names a folder; else an error at `path`."""
        if not value.strip():
            self.error(path, "must not be empty (write '.' for the manifest's folder)")
            return False
        kind = path_kind(self.loaded.root / value)
        if kind != "folder":
            what = "does not exist" if kind == "missing" else f"is {kind}, not a folder"
            self.error(path, f"{value!r} {what} (relative to {self.loaded.root or '.'})")
            return False
        return True

    def check_uploads(self) -> None:
        for name, upload in self.m.uploads.items():
            path = ("uploads", name)
            self.check_datastore_ref(upload.datastore, (*path, "datastore"))
            self.check_inside_datastore(upload.target_path, (*path, "target_path"))
            if not upload.src_dir.strip():
                self.error((*path, "src_dir"), "must not be empty (write '.' to upload the "
                           "manifest's folder)")
            else:
                self.check_local_dir(upload.src_dir, (*path, "src_dir"))
        self.check_upload_overlap()

    def check_upload_overlap(self) -> None:
        """Two uploads into nested folders of one datastore would fight over the same files
        (with delete_extra, each deletes the other's)."""
        seen: list[tuple[str, PurePosixPath, str]] = []
        for name, upload in self.m.uploads.items():
            target = PurePosixPath(upload.target_path.strip("/") or ".")
            for other_name, other_target, datastore in seen:
                if datastore != upload.datastore:
                    continue
                if target == other_target or target in other_target.parents \
                        or other_target in target.parents or "." in (str(target),
                                                                     str(other_target)):
                    self.error(("uploads", name, "target_path"),
                               f"{upload.target_path!r} overlaps upload {other_name!r} "
                               f"({str(other_target)!r}) on datastore {datastore!r}")
            seen.append((name, target, upload.datastore))

    # runs ----------------------------------------------------------------------------------

    def check_runs(self) -> None:
        for name, run in self.m.runs.items():
            path = ("runs", name)
            if run.experiment not in self.m.experiments:
                self.error((*path, "experiment"), f"unknown experiment {run.experiment!r}"
                           + _choices(run.experiment, list(self.m.experiments)))
            compute = self.m.computes.get(run.compute)
            if compute is None:
                self.error((*path, "compute"), f"unknown compute {run.compute!r}"
                           + _choices(run.compute, list(self.m.computes)))
            source_ok = self.check_local_dir(run.source_directory, (*path, "source_directory"))
            self.check_entry(name, run, source_ok)
            self.check_distribution(path, run, compute)
            self.check_env_vars(path, run)
            for input_path, data_input in _run_inputs(run, path):
                self.check_datastore_ref(data_input.datastore, (*input_path, "datastore"))
                self.check_inside_datastore(data_input.path, (*input_path, "path"))
            for input_id in run.inputs:
                self.check_name("input", input_id, (*path, "inputs", input_id))
            for index, output_id in enumerate(run.outputs):
                if not NAME_RULES["input"][0].match(output_id):
                    self.error((*path, "outputs", index),
                               f"invalid output id {output_id!r}: {NAME_RULES['input'][1]}")
            if run.role_arguments is not None and run.compat != "batchai":
                self.error((*path, "role_arguments"), "role_arguments needs compat: batchai")
            conda = run.environment.conda_file
            if conda and path_kind(self.loaded.root / conda) != "a file":
                self.error((*path, "environment", "conda_file"), f"{conda!r} does not exist")

    def check_entry(self, name: str, run: Any, source_ok: bool) -> None:
        path = ("runs", name)
        if run.entry_script is not None and run.command is not None:
            self.error((*path, "command"), "give entry_script or command, not both")
            return
        if run.entry_script is None and run.command is None:
            self.error(path, "required field 'entry_script' is missing (or give a command)")
            return
        if run.entry_script is None:
            return
        entry = run.entry_script
        where = (*path, "entry_script")
        pure = PurePosixPath(entry.replace("\\", "/"))
        if not entry.strip() or pure.is_absolute() or re.match(r"^[A-Za-z]:", entry) \
                or ".." in pure.parts:
            self.error(where, f"{entry!r} must be a path inside source_directory "
                              "(relative, no '..')")
            return
        if not source_ok:
            return
        source = self.loaded.root / run.source_directory
        script = source / entry
        if path_kind(script) != "a file":
            self.error(where, f"{entry!r} not found in {run.source_directory!r}")
            return
        # a symbolic link may lead out of the folder that is snapshotted for the run
        real_source = os.path.realpath(source)
        if not os.path.realpath(script).startswith(real_source.rstrip(os.sep) + os.sep):
            self.error(where, f"{entry!r} leads outside source_directory "
                              f"{run.source_directory!r} (through a symbolic link)")

    def check_env_vars(self, path: tuple[str | int, ...], run: Any) -> None:
        for key in run.environment.env_vars:
            if not ENV_NAME.match(key):
                self.error((*path, "environment", "env_vars", key),
                           f"invalid environment variable name {key!r}: letters, digits and "
                           "'_', not starting with a digit")

    def check_distribution(self, path: tuple[str | int, ...], run: Any, compute: Any) -> None:
        dist = run.distribution
        dpath = (*path, "distribution")
        node_count = getattr(dist, "node_count", 1)
        if compute is not None and node_count > compute.max_nodes:
            self.error((*dpath, "node_count"), f"node_count ({node_count}) is greater than "
                       f"max_nodes ({compute.max_nodes}) of compute {run.compute!r}")
        if dist.type == "parameter_server":
            processes = dist.worker_count + dist.parameter_server_count
            if node_count > processes:
                self.error((*dpath, "node_count"), f"node_count ({node_count}) exceeds the "
                           f"{processes} processes (workers + parameter servers) to place")
        elif dist.type == "multi_worker" and node_count > dist.worker_count:
            self.error((*dpath, "node_count"), f"node_count ({node_count}) exceeds "
                       f"worker_count ({dist.worker_count})")
        per_node = processes_per_node(dist)
        if per_node > MAX_PROCESSES_PER_NODE:
            field = "process_count_per_node" if dist.type == "mpi" else "worker_count"
            self.error((*dpath, field), f"{per_node} processes would run on each of "
                       f"{node_count} node(s); at most {MAX_PROCESSES_PER_NODE} per node "
                       "(spread them over more nodes with node_count)")
        elif compute is not None and per_node > 1:
            from amlctl.manifest import vmsizes

            size = vmsizes.lookup(compute.vm_size)
            if size is not None and per_node > size.vcpus:
                self.warn(dpath, f"{per_node} processes on each node of compute "
                          f"{run.compute!r}, whose {size.name} nodes have {size.vcpus} vCPUs")


def processes_per_node(dist: Any) -> int:
    """Processes of a run on its busiest node."""
    node_count = getattr(dist, "node_count", 1)
    if dist.type == "parameter_server":
        return -(-(dist.worker_count + dist.parameter_server_count) // node_count)
    if dist.type == "multi_worker":
        return -(-dist.worker_count // node_count)
    if dist.type == "mpi":
        return dist.process_count_per_node
    return 1


def path_kind(path: Path) -> str:
    """'a file', 'folder', 'missing', or what else `path` is, without raising.

    A name too long, a symlink loop or a path through a file read as 'missing' or as the
    reason, never as an exception.
    """
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "missing"
    except OSError as err:
        if err.errno in (errno.ENOENT, errno.ENOTDIR):
            return "missing"
        reasons = {errno.ELOOP: "a symbolic link loop", errno.ENAMETOOLONG: "a name too long",
                   errno.EACCES: "not readable"}
        return reasons.get(err.errno or 0, err.strerror or "unreadable")
    except ValueError:  # a NUL character; reported on its own
        return "missing"
    if stat.S_ISDIR(mode):
        return "folder"
    if stat.S_ISREG(mode):
        return "a file"
    return "not a regular file"


def _choices(name: str, options: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(name, options, n=1)
    if close:
        return f" (did you mean '{close[0]}'?)"
    return f" (defined: {', '.join(options)})" if options else " (none defined)"


def _run_inputs(run: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple, DataInput]]:
    from amlctl.manifest.models import DataInput

    for key, value in run.inputs.items():
        yield (*path, "inputs", key), value
    args = run.arguments
    items = args.items() if isinstance(args, dict) else enumerate(args)
    for key, value in items:
        if isinstance(value, DataInput):
            yield (*path, "arguments", key), value
    if run.role_arguments is not None:
        for role in ("ps", "worker"):
            for index, value in enumerate(getattr(run.role_arguments, role)):
                if isinstance(value, DataInput):
                    yield (*path, "role_arguments", role, index), value


def _sensitive_paths(value: Any, path: tuple[str | int, ...]) -> Iterator[tuple]:
    if isinstance(value, SensitiveStr):
        yield path
    elif isinstance(value, dict):
        for key, child in value.items():
            yield from _sensitive_paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _sensitive_paths(child, (*path, index))


def _model_value(model: Any, path: tuple[str | int, ...]) -> Any:
    node = model
    for part in path:
        if isinstance(node, dict | list):
            try:
                node = node[part]
            except (KeyError, IndexError, TypeError):
                return None
        else:
            node = getattr(node, str(part), None)
    return node


def local_path(root: Path, value: str) -> Path:
    """A manifest-relative path resolved against the manifest's folder."""
    return (root / value).resolve()
