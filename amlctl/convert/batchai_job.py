"""A Batch AI job as an amlctl run (`runs.NAME`).

Each toolkit's settings become how the run starts (entry script or command, arguments) and
how it spreads (distribution); `batchai_values` translates the Batch AI variables in its
command lines. What only a Batch AI launcher could provide stays for `compat: batchai`,
which sets those variables for unchanged scripts.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap

from amlctl.convert import cmdline, yamldoc
from amlctl.convert.batchai_cluster import ComputeDraft
from amlctl.convert.batchai_values import COMPAT_VARS, MOUNT_IN_TEXT, DataRef, Values
from amlctl.convert.cmdline import BATCHAI_VAR, Item
from amlctl.convert.report import Outcome, Report
from amlctl.convert.sources import SourceFile
from amlctl.convert.storage import Mount, Storage, locate

TOOLKITS = (
    "tensorFlowSettings", "horovodSettings", "customMpiSettings", "cntkSettings",
    "pyTorchSettings", "chainerSettings", "caffe2Settings", "caffeSettings",
    "customToolkitSettings",
)
_PIP_INSTALL = re.compile(r"^(?:python\d?(?:\.\d+)? -m )?pip\d?(?:\.\d+)? install (?P<args>.+)$")
_DURATION = re.compile(r"^(?:(?P<d>\d+)\.)?(?P<h>\d+):(?P<m>\d\d):(?P<s>\d\d)(?:\.\d+)?$")
_ISO_DURATION = re.compile(r"^P(?:(?P<d>\d+)D)?(?:T(?:(?P<h>\d+)H)?(?:(?P<m>\d+)M)?"
                           r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?$")


@dataclass
class RunDraft:
    """A run being written, with what the compute it is placed on must allow."""

    name: str
    experiment: str
    body: CommentedMap
    node_count: int
    gpu: bool  # the job looks like a GPU job (its image or the cluster's size)


@dataclass
class _Program:
    """What a toolkit's settings become: how the run starts and how it spreads."""

    head: CommentedMap  # source_directory, entry_script or command, arguments
    distribution: dict[str, Any] | None = None
    note: str = ""  # where the distribution came from
    role_arguments: CommentedMap | None = None


@dataclass
class _Roles:
    """Argument items per Batch AI role of a TensorFlow job."""

    master: list[Item] | None
    worker: list[Item] | None
    ps: list[Item] | None


class JobConverter:
    """Converts one job file; `convert()` returns the run and reports every field."""

    def __init__(self, src: SourceFile, run_name: str, experiment: str, compute: ComputeDraft,
                 storage: Storage, report: Report, compat_allowed: bool) -> None:
        self.src = src
        self.name = run_name
        self.experiment = experiment
        self.compute = compute
        self.storage = storage
        self.report = report
        self.compat_allowed = compat_allowed
        self.target = f"runs.{run_name}"
        self.job_mounts: list[Mount] = storage.read_mounts(src, "mountVolumes")
        self.values = Values(src, self.target, self.job_mounts, compute.mounts, report)
        self.compat_needs: list[tuple[str, str]] = []  # (field, reason) compat: batchai serves
        self.body = yamldoc.mapping()
        self.node_count = max(_int(src.get("nodeCount"), 1), 1)

    # the whole job ---------------------------------------------------------------------------

    def convert(self) -> RunDraft:
        """Map the job; the run body's keys follow the manifest's order."""
        body = self.body
        body["experiment"] = self.experiment
        body["compute"] = self.compute.name
        self.values.read_directories()
        toolkit = self._toolkit()
        program = self._convert_toolkit(toolkit)
        body.update(program.head)
        self._undeclared_io()
        if self.values.inputs:
            body["inputs"] = yamldoc.mapping(
                {k: v.node() for k, v in self.values.inputs.items()})
        if self.values.outputs:
            body["outputs"] = yamldoc.sequence(self.values.outputs, flow=True)
            yamldoc.note(body, "outputs", "written under outputs/<ID>, kept with the run", 2)
        if program.distribution:
            body["distribution"] = yamldoc.mapping(program.distribution, flow=True)
            yamldoc.note(body, "distribution", program.note, 2, above=True)
        environment, gpu = self._environment()
        if environment:
            body["environment"] = environment
        use_gpu = self.compute.gpus > 0 if self.compute.gpus is not None else gpu
        if use_gpu:
            body["use_gpu"] = True
            why = ("the cluster's VM size has GPUs" if self.compute.gpus
                   else "the job's image is a GPU image")
            yamldoc.note(body, "use_gpu", why, 2)
        role_arguments = program.role_arguments
        self._compat(role_arguments)
        if role_arguments is not None and body.get("compat") == "batchai":
            body["role_arguments"] = role_arguments
            yamldoc.note(body, "role_arguments", "Batch AI gave parameter servers and workers "
                         "different command lines: these extras follow the common arguments "
                         "of each role", 2)
        self._constraints()
        self._other_fields(toolkit)
        self._report_mounts()
        return RunDraft(self.name, self.experiment, body, self.node_count, gpu)

    def _toolkit(self) -> str | None:
        present = [k for k in TOOLKITS if isinstance(self.src.get(k), dict)]
        for extra in present[1:]:
            self.report.add(self.src.name, self.src.field(extra), Outcome.ACTION, None,
                            f"Batch AI runs one toolkit per job; {present[0]} was converted, "
                            f"this one was not: make it a run of its own")
        return present[0] if present else None

    def _convert_toolkit(self, toolkit: str | None) -> _Program:
        if toolkit is None:
            return self._no_toolkit()
        handler = {
            "tensorFlowSettings": self._tensorflow,
            "horovodSettings": self._horovod,
            "customMpiSettings": self._custom_mpi,
            "cntkSettings": self._cntk,
            "pyTorchSettings": self._pytorch,
            "chainerSettings": self._chainer,
            "caffe2Settings": self._caffe2,
            "caffeSettings": self._caffe,
            "customToolkitSettings": self._custom_toolkit,
        }[toolkit]
        return handler(toolkit)

    # toolkits --------------------------------------------------------------------------------

    def _tensorflow(self, key: str) -> _Program:
        settings = self.src.get(key)
        head = self._script(key)
        self._interpreter(key)
        roles = _Roles(self._args(key, "masterCommandLineArgs"),
                       self._args(key, "workerCommandLineArgs"),
                       self._args(key, "parameterServerCommandLineArgs"))
        distributed = self.node_count > 1 or any(
            k in settings for k in ("workerCount", "parameterServerCount",
                                    "workerCommandLineArgs", "parameterServerCommandLineArgs"))
        if not distributed:
            items = roles.master if roles.master is not None else roles.worker or []
            self._report_args(key, ("masterCommandLineArgs", "workerCommandLineArgs"))
            head.update(self._arguments(items))
            return _Program(head)

        workers = _int(settings.get("workerCount"), self.node_count)
        ps_count = _int(settings.get("parameterServerCount"), 1)
        node_count = self.node_count
        for count_key, target, value, default in (
                ("workerCount", "worker_count", workers, "nodeCount"),
                ("parameterServerCount", "parameter_server_count", ps_count, "1")):
            given = count_key in settings
            field_path = self.src.field(key, count_key) if given else self.src.field(key)
            self.report.add(self.src.name, field_path, Outcome.MAPPED,
                            f"{self.target}.distribution.{target}",
                            str(value) if given else f"{value} (Batch AI's default: {default})",
                            remark=not given)
        if node_count > workers + ps_count:
            self.report.add(self.src.name, self.src.field("nodeCount"), Outcome.ACTION,
                            f"{self.target}.distribution.node_count",
                            f"{node_count} nodes for {workers + ps_count} processes: "
                            f"node_count lowered to {workers + ps_count}")
            node_count = workers + ps_count
        self.node_count = node_count
        distribution = {"type": "parameter_server", "node_count": node_count,
                        "worker_count": workers, "parameter_server_count": ps_count}
        common, role_arguments = self._split_roles(key, roles)
        head.update(self._arguments(common))
        return _Program(head, distribution, f"{self.src.field(key)} and nodeCount",
                        role_arguments)

    def _horovod(self, key: str) -> _Program:
        head = self._python(key)
        distribution, note = self._mpi(key, always=True)
        return _Program(head, distribution, note)

    def _chainer(self, key: str) -> _Program:
        result = self._horovod(key)
        result.note += "; ChainerMN runs under MPI as in Batch AI"
        return result

    def _custom_mpi(self, key: str) -> _Program:
        command = str(self.src.get(key, "commandLine", default=""))
        head = self._command(key, "commandLine", command)
        distribution, note = self._mpi(key, always=True)
        return _Program(head, distribution, note)

    def _cntk(self, key: str) -> _Program:
        settings = self.src.get(key)
        language = str(settings.get("languageType", "")).lower()
        brainscript = language == "brainscript" or (
            "configFilePath" in settings and "pythonScriptFilePath" not in settings)
        if "languageType" in settings:
            self.report.add(self.src.name, self.src.field(key, "languageType"), Outcome.MAPPED,
                            f"{self.target}.command" if brainscript
                            else f"{self.target}.entry_script")
        head = self._config_command(key, "cntk configFile=") if brainscript else self._python(key)
        distribution, note = self._mpi(key, always=False)
        return _Program(head, distribution, note)

    def _pytorch(self, key: str) -> _Program:
        head = self._python(key)
        distribution, note = self._mpi(key, always=False)
        backend = self.src.get(key, "communicationBackend")
        if backend is not None:
            self.report.add(self.src.name, self.src.field(key, "communicationBackend"),
                            Outcome.ACTION if distribution else Outcome.DROPPED,
                            f"{self.target}.distribution" if distribution else None,
                            f"backend {backend}: the manifest has no PyTorch distribution yet, "
                            "so the processes start under MPI; take the rank from "
                            "OMPI_COMM_WORLD_RANK and initialise torch.distributed with "
                            f"backend {str(backend).lower()}" if distribution else
                            "a single process needs no communication backend")
        return _Program(head, distribution, note)

    def _caffe2(self, key: str) -> _Program:
        head = self._python(key)
        distribution = None
        note = ""
        if self.node_count > 1:
            distribution = {"type": "mpi", "node_count": self.node_count,
                            "process_count_per_node": 1}
            note = "one process per node, as Batch AI started Caffe2"
            self.report.add(self.src.name, self.src.field(key), Outcome.ACTION,
                            f"{self.target}.distribution",
                            "Azure ML has no Caffe2 launcher (Caffe2 is part of PyTorch now): "
                            "the run starts one process per node under MPI; the script's "
                            "rendezvous (shard id, shared file store) needs rework", remark=True)
        return _Program(head, distribution, note)

    def _caffe(self, key: str) -> _Program:
        settings = self.src.get(key)
        if "configFilePath" in settings and "pythonScriptFilePath" not in settings:
            head = self._config_command(key, "caffe train --solver=")
        else:
            head = self._python(key)
        distribution, note = self._mpi(key, always=False)
        self.report.add(self.src.name, self.src.field(key), Outcome.ACTION, None,
                        "Azure ML has no Caffe environment: give the run a docker image with "
                        "Caffe (environment.docker_image)", remark=True)
        return _Program(head, distribution, note)

    def _custom_toolkit(self, key: str) -> _Program:
        command = str(self.src.get(key, "commandLine", default=""))
        head = self._command(key, "commandLine", command)
        if self.node_count > 1:
            self.report.add(self.src.name, self.src.field("nodeCount"), Outcome.ACTION,
                            f"{self.target}.distribution",
                            f"Batch AI ran the command once with {self.node_count} nodes "
                            "reserved: Azure ML runs it once on one node; use an mpi "
                            "distribution if it started processes on the other nodes")
            self.node_count = 1
        return _Program(head)

    def _no_toolkit(self) -> _Program:
        head = yamldoc.mapping({"source_directory": "src",
                                "command": "echo 'the Batch AI job named no toolkit'"})
        yamldoc.note(head, "command", "placeholder: write the job's command", 2)
        self.report.add(self.src.name, self.src.field(), Outcome.ACTION,
                        f"{self.target}.command",
                        "the job has no toolkit settings: the run is a skeleton; write its "
                        "command or entry_script", remark=True)
        return _Program(head)

    # pieces of toolkits ----------------------------------------------------------------------

    def _mpi(self, key: str, *, always: bool) -> tuple[dict[str, Any] | None, str]:
        given = self.src.get(key, "processCount")
        processes = max(_int(given, self.node_count), 1)
        nodes = self.node_count
        if not always and nodes == 1 and processes == 1:
            if given is not None:
                self.report.add(self.src.name, self.src.field(key, "processCount"),
                                Outcome.MAPPED, None, "one process: no distribution")
            return None, ""
        if processes < nodes:
            self.report.add(self.src.name, self.src.field("nodeCount"), Outcome.ACTION,
                            f"{self.target}.distribution.node_count",
                            f"{processes} processes on {nodes} nodes: node_count lowered to "
                            f"{processes}")
            nodes = processes
            self.node_count = nodes
        per_node = math.ceil(processes / nodes)
        if per_node * nodes != processes:
            self.report.add(self.src.name, self.src.field(key, "processCount"), Outcome.ACTION,
                            f"{self.target}.distribution.process_count_per_node",
                            f"{processes} processes do not split evenly over {nodes} nodes: "
                            f"{per_node} per node ({per_node * nodes} in all)")
        elif given is not None:
            self.report.add(self.src.name, self.src.field(key, "processCount"), Outcome.MAPPED,
                            f"{self.target}.distribution.process_count_per_node",
                            f"{processes} processes over {nodes} nodes")
        note = (f"{self.src.field(key, 'processCount')} over nodeCount" if given is not None
                else "nodeCount, one process per node (Batch AI's default)")
        return {"type": "mpi", "node_count": nodes, "process_count_per_node": per_node}, note

    def _python(self, key: str) -> CommentedMap:
        """A Python toolkit's script and arguments (pythonScriptFilePath, commandLineArgs)."""
        head = self._script(key)
        self._interpreter(key)
        head.update(self._arguments(self._args(key, "commandLineArgs") or []))
        self._report_args(key, ("commandLineArgs",))
        return head

    def _config_command(self, key: str, prefix: str) -> CommentedMap:
        """A toolkit started from a config file: `<prefix><configFilePath> <commandLineArgs>`."""
        args = str(self.src.get(key, "commandLineArgs", default=""))
        line = f"{prefix}{self.src.get(key, 'configFilePath', default='')}" + (
            f" {args}" if args else "")
        return self._command(key, "configFilePath", line,
                             also=("commandLineArgs",) if args else ())

    def _script(self, key: str) -> CommentedMap:
        field_path = self.src.field(key, "pythonScriptFilePath")
        path = str(self.src.get(key, "pythonScriptFilePath", default=""))
        directory, script, note, outcome = self.values.script_location(path)
        head = yamldoc.mapping({"source_directory": directory, "entry_script": script})
        yamldoc.note(head, "entry_script", f"{field_path}", 2)
        self.report.add(self.src.name, field_path, outcome,
                        f"{self.target}.source_directory, {self.target}.entry_script", note)
        return head

    def _interpreter(self, key: str) -> None:
        if self.src.get(key, "pythonInterpreterPath") is not None:
            self.report.add(self.src.name, self.src.field(key, "pythonInterpreterPath"),
                            Outcome.ACTION, f"{self.target}.environment",
                            "Azure ML runs the environment's python: choose the interpreter "
                            "through environment.docker_image or conda_file")

    def _command(self, key: str, field_key: str, line: str,
                 also: tuple[str, ...] = ()) -> CommentedMap:
        fields = [self.src.field(key, f) for f in (field_key, *also)]
        command = self.values.text(line, fields[0])
        head = yamldoc.mapping({"source_directory": "src", "command": command})
        yamldoc.note(head, "command", " + ".join(fields), 2)
        yamldoc.note(head, "source_directory", "command runs still snapshot a folder: create "
                     "it (it may stay empty)", 2)
        for path in fields:
            self.report.add(self.src.name, path, Outcome.MAPPED, f"{self.target}.command",
                            "Batch AI variables rewritten: inputs as $AZUREML_DATAREFERENCE_<ID>, "
                            "outputs as outputs/<ID>" if BATCHAI_VAR.search(line) else "")
        self.report.add(self.src.name, self.src.field(key), Outcome.ACTION,
                        f"{self.target}.source_directory",
                        "a command run snapshots ./src beside the manifest: create it and put "
                        "any files the command needs there", remark=True)
        return head

    def _report_args(self, key: str, arg_keys: tuple[str, ...]) -> None:
        for arg_key in arg_keys:
            if self.src.get(key, arg_key) is not None:
                self.report.add(self.src.name, self.src.field(key, arg_key), Outcome.MAPPED,
                                f"{self.target}.arguments", "parsed into flag -> value pairs; "
                                "--flag=value is written as --flag value")

    # arguments -------------------------------------------------------------------------------

    def _args(self, key: str, arg_key: str) -> list[Item] | None:
        text = self.src.get(key, arg_key)
        if text is None:
            return None
        field_path = self.src.field(key, arg_key)
        items = cmdline.group(cmdline.split(str(text)))
        return [Item(i.flag, None if i.value is None else self.values.value(i.value, field_path),
                     i.joined) for i in items]

    def _arguments(self, items: list[Item]) -> dict[str, Any]:
        if not items:
            return {}
        flags = [i.flag for i in items]
        if all(flags) and len(set(flags)) == len(flags):
            return {"arguments": yamldoc.mapping(
                {i.flag: _node(i.value) for i in items if i.flag})}
        return {"arguments": yamldoc.sequence([_node(t) for i in items for t in i.tokens()])}

    def _split_roles(self, key: str, roles: _Roles) -> tuple[list[Item], CommentedMap | None]:
        """The arguments every role shares, and per-role extras when roles differ."""
        master, worker, ps = roles.master, roles.worker, roles.ps
        worker_items = worker if worker is not None else master or []
        if master is not None and worker is not None and master != worker:
            only = [i for i in master if i not in worker]
            self.report.add(self.src.name, self.src.field(key, "masterCommandLineArgs"),
                            Outcome.ACTION, f"{self.target}.arguments",
                            "Azure ML has no master role (worker 0 is the chief) and gives "
                            "every worker the worker arguments; the master's own arguments "
                            f"{_show(only)} are lost: make the script decide by task index")
        elif master is not None:
            self.report.add(self.src.name, self.src.field(key, "masterCommandLineArgs"),
                            Outcome.MAPPED, f"{self.target}.arguments",
                            "worker 0 is the chief in Azure ML" +
                            ("; same as the worker arguments" if worker is not None else ""))
        if self.compat_allowed:
            self._note_cluster_flags(key, roles)
        else:
            worker_field = "workerCommandLineArgs" if worker is not None else (
                "masterCommandLineArgs")
            worker_items = self._drop_cluster_flags(key, worker_field, worker_items)
            if ps is not None:
                ps = self._drop_cluster_flags(key, "parameterServerCommandLineArgs", ps)
        ps_items = ps or []
        if worker is not None:
            self.report.add(self.src.name, self.src.field(key, "workerCommandLineArgs"),
                            Outcome.MAPPED, f"{self.target}.arguments")
        if ps_items == worker_items:
            if ps is not None:
                self.report.add(self.src.name,
                                self.src.field(key, "parameterServerCommandLineArgs"),
                                Outcome.MAPPED, f"{self.target}.arguments",
                                "same as the worker arguments")
            return worker_items, None
        if not self.compat_allowed:
            self.report.add(self.src.name, self.src.field(key, "parameterServerCommandLineArgs"),
                            Outcome.ACTION, f"{self.target}.arguments",
                            "parameter servers had other arguments than workers; Azure ML gives "
                            "every role one list (the workers'): make the script read its role "
                            "from TF_CONFIG; parameter-server arguments were "
                            f"{_show(ps_items)}")
            return worker_items, None
        common, worker_extra, ps_extra = _common(worker_items, ps_items)
        roles_node = yamldoc.mapping({
            "ps": yamldoc.sequence([_node(t) for i in ps_extra for t in i.tokens()], flow=True),
            "worker": yamldoc.sequence([_node(t) for i in worker_extra for t in i.tokens()],
                                       flow=True),
        })
        self.compat_needs.append(
            (self.src.field(key, "parameterServerCommandLineArgs"),
             "parameter servers and workers had different arguments (role_arguments)"))
        self.report.add(self.src.name, self.src.field(key, "parameterServerCommandLineArgs"),
                        Outcome.MAPPED, f"{self.target}.role_arguments",
                        "parameter servers had other arguments than workers: the shared ones "
                        "are in arguments, the rest in role_arguments (ps, worker)")
        return common, roles_node

    def _note_cluster_flags(self, key: str, roles: _Roles) -> None:
        for arg_key, items in (("masterCommandLineArgs", roles.master),
                               ("workerCommandLineArgs", roles.worker),
                               ("parameterServerCommandLineArgs", roles.ps)):
            flags = [i.flag or str(i.value) for i in items or []
                     if _is_cluster_item(i) and i.value is not None and "$" in str(i.value)]
            if flags:
                self.report.add(self.src.name, self.src.field(key, arg_key), Outcome.MAPPED,
                                f"{self.target}.compat",
                                f"{', '.join(flags)} kept: compat: batchai sets the host and "
                                "task-index variables; if the script reads TF_CONFIG, drop them "
                                "(convert with --no-compat)")

    def _drop_cluster_flags(self, key: str, arg_key: str, items: list[Item]) -> list[Item]:
        dropped = [i for i in items if _is_cluster_item(i)]
        if dropped:
            self.report.add(self.src.name, self.src.field(key, arg_key), Outcome.ACTION,
                            f"{self.target}.arguments",
                            f"{_show(dropped)} removed (--no-compat): the script must read its "
                            "role, index and cluster from TF_CONFIG, which Azure ML sets")
        return [i for i in items if not _is_cluster_item(i)]

    # values ----------------------------------------------------------------------------------

    def _undeclared_io(self) -> None:
        """Input and output directories no command line names: the script reads the variables."""
        for input_id, (path, field_path) in self.values.input_dirs.items():
            if input_id in self.values.used_inputs:
                self.report.add(self.src.name, field_path, Outcome.MAPPED,
                                f"{self.target}.arguments" if input_id not in self.values.inputs
                                else f"{self.target}.inputs.{input_id}",
                                f"{path} as a datastore input")
                continue
            ref = self.values.data_ref(path, field_path)
            self.values.inputs[input_id] = ref
            self.compat_needs.append(
                (field_path, f"the script may read $AZ_BATCHAI_INPUT_{input_id} itself"))
            self.report.add(self.src.name, field_path, Outcome.MAPPED,
                            f"{self.target}.inputs.{input_id}",
                            f"{path} as input {input_id} ($AZUREML_DATAREFERENCE_{input_id}; "
                            f"$AZ_BATCHAI_INPUT_{input_id} with compat: batchai)")
        for output_id in self.values.outputs:
            if output_id not in self.values.used_outputs:
                self.compat_needs.append(
                    (self.src.field("outputDirectories"),
                     f"the script may read $AZ_BATCHAI_OUTPUT_{output_id} itself"))

    def _compat(self, role_arguments: CommentedMap | None) -> None:
        # Only variables still in the run's command lines count: --no-compat may have removed
        # the flags that held them.
        lines = {k: self.body[k] for k in ("command", "arguments") if k in self.body}
        if role_arguments is not None:
            lines["role_arguments"] = role_arguments
        written = yamldoc.dump(yamldoc.mapping(lines))
        kept = set(cmdline.variables(written))
        for var, fields in self.values.var_fields.items():
            if var in kept:
                self.compat_needs.extend((f, var) for f in fields)
        needs = self.compat_needs
        if not needs:
            return
        if self.compat_allowed:
            self.body["compat"] = "batchai"
            reasons = sorted({_reason(r) for _, r in needs})
            yamldoc.note(self.body, "compat", "sets the AZ_BATCHAI_* variables Batch AI "
                         f"scripts read: {'; '.join(reasons)}", 2)
            return
        for field_path, reason in needs:
            self.values.once(field_path, f"compat {reason}", Outcome.ACTION,
                       f"{_reason(reason)}: without compat: batchai the script must use Azure "
                       "ML's variables (TF_CONFIG, AZUREML_DATAREFERENCE_<ID>, outputs/)")

    # environment and the rest ----------------------------------------------------------------

    def _environment(self) -> tuple[CommentedMap, bool]:
        env = yamldoc.mapping()
        gpu = False
        image = self.src.get("containerSettings", "imageSourceRegistry", "image")
        if isinstance(image, str) and image:
            server = self.src.get("containerSettings", "imageSourceRegistry", "serverUrl")
            full = image
            if isinstance(server, str) and server and not image.startswith(server):
                host = re.sub(r"^https?://", "", server).rstrip("/")
                full = f"{host}/{image}"
            env["docker_image"] = full
            yamldoc.note(env, "docker_image",
                         self.src.field("containerSettings", "imageSourceRegistry", "image"), 3)
            self.report.add(self.src.name,
                            self.src.field("containerSettings", "imageSourceRegistry", "image"),
                            Outcome.MAPPED, f"{self.target}.environment.docker_image",
                            "Azure ML builds its environment on this image; an image this old "
                            "may lack the Python that Azure ML needs: check it")
            if isinstance(server, str):
                self.report.add(self.src.name, self.src.field(
                    "containerSettings", "imageSourceRegistry", "serverUrl"), Outcome.MAPPED,
                    f"{self.target}.environment.docker_image", "registry host prefixed")
            gpu = bool(re.search(r"gpu|cuda", image, re.IGNORECASE))
        credentials = self.src.get("containerSettings", "imageSourceRegistry", "credentials")
        if credentials is not None:
            self.report.add(self.src.name, self.src.field(
                "containerSettings", "imageSourceRegistry", "credentials"), Outcome.ACTION,
                None, "private registry credentials have no manifest field yet: attach the "
                "registry to the workspace (or make the image public); the password is not "
                "copied")
        if self.src.get("containerSettings", "shmSize") is not None:
            self.report.add(self.src.name, self.src.field("containerSettings", "shmSize"),
                            Outcome.ACTION, None, "the manifest has no shared-memory size: "
                            "Azure ML's default applies")
        if self.src.get("containerSettings") is None:
            self.report.add(self.src.name, self.src.field("containerSettings"), Outcome.DROPPED,
                            f"{self.target}.environment",
                            "no containerSettings: the job ran on the node's OS; the run uses "
                            "Azure ML's default image", remark=True)
        pip = self._job_preparation()
        if pip:
            env["pip"] = yamldoc.sequence(pip, flow=True)
            yamldoc.note(env, "pip", self.src.field("jobPreparation", "commandLine"), 3)
        variables = self._env_vars()
        if variables:
            env["env_vars"] = variables
        return env, gpu

    def _job_preparation(self) -> list[str]:
        line = self.src.get("jobPreparation", "commandLine")
        if not isinstance(line, str):
            return []
        field_path = self.src.field("jobPreparation", "commandLine")
        for match in MOUNT_IN_TEXT.finditer(line):
            location = locate(match.group(0), self.job_mounts, self.compute.mounts)
            if location is not None and location.mount is not None:
                location.mount.other_uses.append(field_path)
        pip: list[str] = []
        rest: list[str] = []
        for part in (p.strip() for p in re.split(r";|&&|\n", line)):
            if not part:
                continue
            match = _PIP_INSTALL.match(part)
            words = cmdline.split(match.group("args")) if match else []
            if match and all(not w.startswith("-") or w in ("-U", "--upgrade", "-q", "--quiet")
                             for w in words):
                pip.extend(w for w in words if not w.startswith("-"))
            else:
                rest.append(part)
        if rest:
            mapped = f"pip packages ({', '.join(pip)}) went to environment.pip; " if pip else ""
            self.report.add(self.src.name, field_path, Outcome.ACTION,
                            f"{self.target}.environment.pip" if pip else None,
                            f"{mapped}Azure ML has no job preparation step: build an image "
                            f"that runs `{'; '.join(rest)}` (environment.docker_image) or do it "
                            "at the start of the script")
        else:
            self.report.add(self.src.name, field_path, Outcome.MAPPED,
                            f"{self.target}.environment.pip", "pip install lines")
        return pip

    def _env_vars(self) -> CommentedMap:
        out = yamldoc.mapping()
        for index, entry in enumerate(_list(self.src.get("environmentVariables"))):
            if isinstance(entry, dict) and "name" in entry:
                out[str(entry["name"])] = str(entry.get("value", ""))
                self.report.add(self.src.name, self.src.field("environmentVariables", index),
                                Outcome.MAPPED, f"{self.target}.environment.env_vars")
        legacy = self.src.get("environmentVariables")
        if isinstance(legacy, dict):  # some preview files used a plain name -> value object
            for name, value in legacy.items():
                out[str(name)] = str(value)
            self.report.add(self.src.name, self.src.field("environmentVariables"),
                            Outcome.MAPPED, f"{self.target}.environment.env_vars")
        for index, entry in enumerate(_list(self.src.get("secrets"))):
            if not isinstance(entry, dict) or "name" not in entry:
                continue
            name = str(entry["name"])
            out[name] = f"{{{{ secret_env('{name}') }}}}"
            field_path = self.src.field("secrets", index)
            if "valueSecretReference" in entry:
                ref = entry["valueSecretReference"]
                url = ref.get("secretUrl", "") if isinstance(ref, dict) else ""
                note = f"Key Vault secret {url}: export it as {name} before apply"
            else:
                note = f"value not copied: set {name} in the environment before apply"
            self.report.add(self.src.name, field_path, Outcome.ACTION,
                            f"{self.target}.environment.env_vars.{name}", note)
        return out

    def _constraints(self) -> None:
        raw = self.src.get("constraints", "maxWallClockTime")
        if raw is None:
            if self.src.get("constraints") is not None:
                self.report.add(self.src.name, self.src.field("constraints"), Outcome.DROPPED)
            return
        field_path = self.src.field("constraints", "maxWallClockTime")
        seconds = _seconds(str(raw))
        if seconds is None:
            self.report.add(self.src.name, field_path, Outcome.ACTION, None,
                            f"duration {raw!r} not understood: set max_run_duration_seconds")
            return
        self.body["max_run_duration_seconds"] = seconds
        yamldoc.note(self.body, "max_run_duration_seconds", f"{field_path} ({raw})", 2)
        self.report.add(self.src.name, field_path, Outcome.MAPPED,
                        f"{self.target}.max_run_duration_seconds")

    def _other_fields(self, toolkit: str | None) -> None:
        src, report = self.src, self.report
        if "nodeCount" in src.props:
            dist = self.body.get("distribution")
            report.add(src.name, src.field("nodeCount"), Outcome.MAPPED,
                       f"{self.target}.distribution.node_count" if dist else None,
                       "" if dist else "one node: a single-process run")
        if "stdOutErrPathPrefix" in src.props:
            report.add(src.name, src.field("stdOutErrPathPrefix"), Outcome.DROPPED, None,
                       "Azure ML keeps each run's logs with the run: `amlctl logs run."
                       f"{self.name}`")
        for key in ("schedulingPriority", "priority"):
            if key in src.props:
                report.add(src.name, src.field(key), Outcome.DROPPED, None,
                           "AmlCompute queues runs first in, first out; there is no job "
                           "priority (use separate clusters to keep urgent work apart)")
        if "toolType" in src.props:
            report.add(src.name, src.field("toolType"), Outcome.DROPPED, None,
                       "implied by the toolkit settings")
        if toolkit is not None:
            # Anything left in the toolkit settings has been handled above or needs no field.
            for key in self.src.get(toolkit):
                if key not in ("pythonScriptFilePath", "pythonInterpreterPath", "commandLine",
                               "commandLineArgs", "masterCommandLineArgs", "configFilePath",
                               "workerCommandLineArgs", "parameterServerCommandLineArgs",
                               "processCount", "workerCount", "parameterServerCount",
                               "communicationBackend", "languageType"):
                    report.add(src.name, src.field(toolkit, key), Outcome.ACTION, None,
                               "not understood by the converter: check it by hand")

    def _report_mounts(self) -> None:
        self.storage.report_mounts(self.job_mounts, self.src, ("mountVolumes",),
                                   cluster_level=False)


def _common(a: list[Item], b: list[Item]) -> tuple[list[Item], list[Item], list[Item]]:
    """Items both lists share, and what each has besides.

    Lists of flags only can be regrouped freely (argument parsers ignore flag order); with
    positional values only a shared prefix is safe.
    """
    if all(i.flag for i in a + b):
        shared = [i for i in a if i in b]
        return shared, [i for i in a if i not in shared], [i for i in b if i not in shared]
    size = 0
    while size < min(len(a), len(b)) and a[size] == b[size]:
        size += 1
    return a[:size], a[size:], b[size:]


def _is_cluster_item(item: Item) -> bool:
    if item.flag and item.flag.lstrip("-").replace("-", "_") == "job_name":
        return True
    return isinstance(item.value, str) and any(
        f"AZ_BATCHAI_{v}" in item.value for v in ("PS_HOSTS", "WORKER_HOSTS", "TASK_INDEX"))


def _node(value: Any) -> Any:
    return value.node() if isinstance(value, DataRef) else value


def _show(items: list[Item]) -> str:
    words = []
    for item in items:
        for token in item.tokens():
            words.append(f"{token.datastore}:{token.path}" if isinstance(token, DataRef)
                         else str(token))
    return "`" + " ".join(words) + "`" if words else "(none)"


def _reason(reason: str) -> str:
    if reason in COMPAT_VARS:
        return f"${reason} is set per process"
    return reason


def _seconds(text: str) -> int | None:
    match = _DURATION.match(text.strip()) or _ISO_DURATION.match(text.strip())
    if not match or not any(match.groupdict().values()):
        return None
    parts = {k: float(v) if v else 0.0 for k, v in match.groupdict().items()}
    total = parts["d"] * 86400 + parts["h"] * 3600 + parts["m"] * 60 + parts["s"]
    return int(total) if total >= 1 else None


def _int(value: Any, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
