"""Batch AI variables in a job's command lines, in Azure ML terms.

Batch AI jobs named their data through variables: `$AZ_BATCHAI_INPUT_<ID>` (input
directories), `$AZ_BATCHAI_OUTPUT_<ID>` (output directories), and mount roots. Inputs and mount
paths become datastore inputs, outputs become the run's `outputs/<ID>` folders. Per-process
values (`$AZ_BATCHAI_PS_HOSTS`, `$AZ_BATCHAI_TASK_INDEX`) stay as written for
`compat: batchai`, which sets them; the rest is reported.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from amlctl.convert import cmdline, names, yamldoc
from amlctl.convert.report import Outcome, Report
from amlctl.convert.sources import SourceFile
from amlctl.convert.storage import DEFAULT_DATASTORE, Mount, locate

# Per-process variables `compat: batchai` sets.
COMPAT_VARS = frozenset({
    "AZ_BATCHAI_PS_HOSTS", "AZ_BATCHAI_WORKER_HOSTS", "AZ_BATCHAI_TASK_INDEX",
    "AZ_BATCHAI_NUM_GPUS", "AZ_BATCHAI_JOB_TEMP",
})
_ADVICE = {
    "AZ_BATCHAI_SHARED_JOB_TEMP": "a folder shared by the job's nodes: use a datastore path "
                                  "(an input in mount mode) instead",
    "AZ_BATCHAI_PYTORCH_INIT_METHOD": "initialise torch.distributed with init_method='env://' "
                                      "(Azure ML sets MASTER_ADDR and MASTER_PORT)",
    "AZ_BATCHAI_MOUNT_ROOT": "no mount root in Azure ML: use a datastore input",
    "AZ_BATCHAI_JOB_MOUNT_ROOT": "no mount root in Azure ML: use a datastore input",
}
INPUT_REF = re.compile(r"^\$(?:\{AZ_BATCHAI_INPUT_(?P<b>\w+)\}|AZ_BATCHAI_INPUT_(?P<p>\w+))"
                       r"(?P<rest>/.*)?$")
_INPUT_VAR = re.compile(r"\$(?:\{AZ_BATCHAI_INPUT_(?P<b>\w+)\}|AZ_BATCHAI_INPUT_(?P<p>\w+))")
_OUTPUT_VAR = re.compile(r"\$(?:\{AZ_BATCHAI_OUTPUT_(?P<b>\w+)\}|AZ_BATCHAI_OUTPUT_(?P<p>\w+))")
MOUNT_IN_TEXT = re.compile(r"\$(?:\{AZ_BATCHAI_(?:JOB_)?MOUNT_ROOT\}"
                           r"|AZ_BATCHAI_(?:JOB_)?MOUNT_ROOT(?![A-Za-z0-9_]))[^\s'\";|&<>()`]*")


@dataclass(frozen=True)
class DataRef:
    """A datastore path handed to the run (a manifest DataInput)."""

    datastore: str
    path: str

    def node(self) -> CommentedMap:
        """The DataInput as a flow mapping."""
        return yamldoc.mapping({"datastore": self.datastore, "path": self.path}, flow=True)


class Values:
    """Translates one job's arguments and commands, remembering what they referred to.

    After translation: `inputs` (named inputs to declare), `outputs` (output ids), the input
    and output ids the command lines used, and `var_fields` (compat variables -> fields).
    """

    def __init__(self, src: SourceFile, target: str, job_mounts: list[Mount],
                 cluster_mounts: list[Mount], report: Report) -> None:
        self.src = src
        self.target = target
        self.job_mounts = job_mounts
        self.cluster_mounts = cluster_mounts
        self.report = report
        self.inputs: dict[str, DataRef] = {}
        self.input_dirs: dict[str, tuple[str, str]] = {}  # id -> (path, field)
        self.used_inputs: set[str] = set()
        self.outputs: list[str] = []
        self.used_outputs: set[str] = set()
        self.var_fields: dict[str, list[str]] = {}
        self._reported: set[tuple[str, str]] = set()

    def script_location(self, path: str) -> tuple[str, str, str, Outcome]:
        """(source_directory, entry_script, note, outcome) for a pythonScriptFilePath."""
        expanded = path
        match = INPUT_REF.match(path)
        if match:
            input_id = match.group("b") or match.group("p")
            if input_id in self.input_dirs:
                expanded = self.input_dirs[input_id][0].rstrip("/") + (
                    match.group("rest") or "")
        location = locate(expanded, self.job_mounts, self.cluster_mounts)
        script = posixpath.basename(expanded) or "main.py"
        if location is None or location.rel in ("", "."):
            return ("src", script, f"the script came from {path}: put it in ./src beside the "
                    "manifest (Azure ML snapshots the source directory)", Outcome.ACTION)
        directory = posixpath.dirname(location.rel) or "src"
        where = (f"folder {posixpath.dirname(location.inner) or '(root)'} of "
                 f"{location.mount.description}" if location.mount else
                 f"${location.root_var}/{posixpath.dirname(location.rel)}")
        if location.mount is not None:
            location.mount.code_uses.append(f"{self.target}.source_directory")
        return (directory, script, f"copy {where} to ./{directory} beside the manifest: Azure "
                "ML snapshots the source directory instead of reading code from a mount",
                Outcome.ACTION)

    def value(self, token: Any, field_path: str) -> Any:
        """One argument value: datastore input, outputs/<ID> path, or text."""
        if not isinstance(token, str):
            return token
        match = INPUT_REF.match(token)
        if match:
            input_id = match.group("b") or match.group("p")
            ref = self._input_ref(input_id, match.group("rest") or "", field_path)
            if ref is not None:
                return ref
        location = locate(token, self.job_mounts, self.cluster_mounts)
        if location is not None:
            return self.data_ref(token, field_path)
        return cmdline.scalar(self.text(token, field_path))

    def text(self, text: str, field_path: str) -> str:
        """A command or argument text with its Batch AI variables rewritten or kept."""
        def output(match: re.Match[str]) -> str:
            output_id = match.group("b") or match.group("p")
            self.used_outputs.add(output_id)
            if output_id not in self.outputs:
                self.outputs.append(output_id)
                self.once(field_path, f"output {output_id}", Outcome.ACTION,
                           f"$AZ_BATCHAI_OUTPUT_{output_id} names no outputDirectories entry: "
                           f"it is now outputs/{output_id}")
            return f"outputs/{output_id}"

        def mount(match: re.Match[str]) -> str:
            ref = self.data_ref(match.group(0), field_path)
            input_id = self._declare(ref)
            return f"$AZUREML_DATAREFERENCE_{input_id}"

        def input_var(match: re.Match[str]) -> str:
            input_id = match.group("b") or match.group("p")
            ref = self._input_ref(input_id, "", field_path)
            if ref is None:
                return match.group(0)
            self.inputs.setdefault(input_id, ref)
            return f"$AZUREML_DATAREFERENCE_{input_id}"

        text = _OUTPUT_VAR.sub(output, text)
        text = MOUNT_IN_TEXT.sub(mount, text)
        text = _INPUT_VAR.sub(input_var, text)
        for var in cmdline.variables(text):
            self._variable(var, field_path)
        return text

    def _variable(self, var: str, field_path: str) -> None:
        if var in COMPAT_VARS:
            fields = self.var_fields.setdefault(var, [])
            if field_path not in fields:
                fields.append(field_path)
            return
        if var.startswith("AZ_BATCHAI_INPUT_"):
            return  # reported where the input was found missing
        advice = _ADVICE.get(var, "Azure ML has no equivalent")
        self.once(field_path, var, Outcome.ACTION, f"${var} is left as written: {advice}")

    def _input_ref(self, input_id: str, rest: str, field_path: str) -> DataRef | None:
        self.used_inputs.add(input_id)
        known = self.input_dirs.get(input_id)
        if known is None:
            self.once(field_path, f"input {input_id}", Outcome.ACTION,
                       f"$AZ_BATCHAI_INPUT_{input_id} names no inputDirectories entry (it was "
                       "empty in Batch AI): left as written; point it at a datastore path")
            return None
        return self.data_ref(known[0].rstrip("/") + rest, known[1])

    def data_ref(self, path: str, field_path: str) -> DataRef:
        """The datastore path of a Batch AI mount path (the default datastore if unknown)."""
        location = locate(path, self.job_mounts, self.cluster_mounts)
        if location is None:
            self.once(field_path, path, Outcome.ACTION,
                       f"{path} is not under a mount root: upload the data to a datastore "
                       f"(default, path {posixpath.basename(path) or '.'}) and check the input")
            return DataRef(DEFAULT_DATASTORE, posixpath.basename(path) or ".")
        store = location.datastore
        if store is not None and location.mount is not None:
            store.wanted = True
            location.mount.uses.append(self.target)
            return DataRef(store.name, location.inner)
        what = (location.mount.description if location.mount else
                f"no known mount at ${location.root_var}/{location.rel.split('/')[0]}")
        self.once(field_path, path, Outcome.ACTION,
                   f"{path} ({what}): upload that data to the workspace's default datastore "
                   f"at {location.rel}, or point the input at the datastore that holds it")
        return DataRef(DEFAULT_DATASTORE, location.rel or ".")

    def _declare(self, ref: DataRef) -> str:
        for input_id, known in self.inputs.items():
            if known == ref:
                return input_id
        base = names.sanitise(posixpath.basename(ref.path).upper() or ref.datastore.upper(),
                              names.ENV_ID)
        input_id = names.unique(base, list(self.inputs) + list(self.input_dirs),
                                names.ENV_ID)
        self.inputs[input_id] = ref
        return input_id

    def once(self, field_path: str, what: str, outcome: Outcome, note: str) -> None:
        """Report `note` about `what` in `field_path` only the first time it comes up."""
        if (field_path, what) in self._reported:
            return
        self._reported.add((field_path, what))
        self.report.add(self.src.name, field_path, outcome, self.target, note)

    # directories -----------------------------------------------------------------------------

    def read_directories(self) -> None:
        """Learn the job's input and output directories; report the outputs."""
        for index, entry in enumerate(_list(self.src.get("inputDirectories"))):
            if isinstance(entry, dict) and "id" in entry and "path" in entry:
                self.input_dirs[str(entry["id"])] = (
                    str(entry["path"]), self.src.field("inputDirectories", index))
        for index, entry in enumerate(_list(self.src.get("outputDirectories"))):
            if not isinstance(entry, dict) or "id" not in entry:
                continue
            raw_id = str(entry["id"])
            output_id = names.sanitise(raw_id, names.ENV_ID)
            if output_id not in self.outputs:
                self.outputs.append(output_id)
            extra = f" (renamed from {raw_id})" if output_id != raw_id else ""
            self.report.add(self.src.name, self.src.field("outputDirectories", index),
                            Outcome.MAPPED, f"{self.target}.outputs",
                            f"written to outputs/{output_id}{extra}, kept with the run and "
                            "downloadable from it; pathPrefix and pathSuffix are no longer "
                            "needed")


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
