"""Runs on Azure ML: a run definition as a ScriptRunConfig, and the seam that submits it.

`build_run` makes the SDK objects offline: ScriptRunConfig with TensorflowConfiguration
(worker_count, parameter_server_count) or MpiConfiguration and the run's node_count, datastore
inputs as DataReferences added to `run_config.data_references` (the SDK does not pick them up
from the arguments), an Environment from pip / conda / docker image, tags `amlctl.stack`,
`amlctl.spec_hash` and `amlctl.run`. `compat: batchai` runs through `batchai_launcher.py`,
copied into a staged snapshot next to the user's files.

Everything that talks to the run history service goes through `RunService`, whose SDK
implementation is `SdkRunService`.

Exactly once: a submission carries a run id amlctl chooses (`amlctl.runs.identity.run_id`: stack,
run name, spec hash). The create is never blindly retried: after any failure the run is looked
up by that id first, and a second create with the same id collides in the service instead of
starting a second paid run. A run created but left untagged (the SDK tags in a separate request
after the create) is found by its id and tagged on the next submission of the same spec.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from amlctl.errors import ProviderError
from amlctl.providers.azure import sdk
from amlctl.providers.azure.retry import (
    DEFAULT_POLICY,
    AzureCallError,
    RetryPolicy,
    call,
    failure,
    first_line,
    is_transient,
)
from amlctl.providers.azure.roles import NOT_STARTED, declared, log_tails, role_of, role_statuses
from amlctl.providers.base import OWNER_TAG, SPEC_HASH_TAG, RoleStatus, RunRequest
from amlctl.runs.arguments import render_arguments as shared_render_arguments
from amlctl.runs.definition import Arguments, DataInputRef, RunDistribution, RunEnvironment

log = logging.getLogger("amlctl.azure.runs")

RUN_NAME_TAG = "amlctl.run"
LAUNCHER = "amlctl_batchai_launcher.py"
DATAREFERENCE = "AZUREML_DATAREFERENCE_"
DEFAULT_MAX_RUN_SECONDS = 2592000  # the SDK's default: 30 days
# AML's statuses folded into the six amlctl shows (the others are transitional).
STATUS = {"NotStarted": "Queued", "Starting": "Preparing", "Provisioning": "Preparing",
          "Preparing": "Preparing", "Queued": "Queued", "Running": "Running",
          "Finalizing": "Running", "CancelRequested": "Running", "Completed": "Completed",
          "Failed": "Failed", "Canceled": "Canceled", "NotResponding": "Failed"}


@dataclass(frozen=True)
class RunRecord:
    """A run as the service reports it (plain data, no SDK object)."""

    id: str
    experiment: str
    status: str
    tags: dict[str, str]
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    target: str | None = None


class RunService(Protocol):
    """The edge to the run history service (experiments and runs)."""

    def experiments(self) -> dict[str, dict[str, str]]:
        """Active experiments: name -> tags."""
        ...

    def ensure_experiment(self, name: str, tags: dict[str, str],
                          remove: list[str]) -> None:
        """Create the experiment if needed, set `tags` and remove the `remove` keys."""
        ...

    def archive_experiment(self, name: str) -> None:
        """Archive (AML never deletes an experiment that has runs)."""
        ...

    def submit(self, experiment: str, config: Any, tags: dict[str, str],
               run_id: str) -> RunRecord:
        """Submit a ScriptRunConfig as run `run_id`, at most once: an existing run with that
        id is tagged and returned instead."""
        ...

    def find(self, experiment: str | None, tags: dict[str, str]) -> list[RunRecord]:
        """Runs carrying all `tags` (server-side filter), newest first."""
        ...

    def get(self, run_id: str) -> RunRecord | None:
        """A run by id."""
        ...

    def cancel(self, run_id: str) -> RunRecord:
        """Cancel an active run."""
        ...

    def logs(self, run_id: str, follow: bool) -> Iterator[str]:
        """Log lines, streaming while the run is active when `follow`."""
        ...

    def roles(self, run_id: str) -> list[RoleStatus]:
        """Each process of the run with its derived state and the last line of its log."""
        ...


# --- building -------------------------------------------------------------------------------


@dataclass
class BuiltRun:
    """The SDK objects of one submission, and the staged folder to remove afterwards."""

    config: Any  # ScriptRunConfig
    tags: dict[str, str]
    data_references: dict[str, Any] = field(default_factory=dict)
    staged: Path | None = None

    def cleanup(self) -> None:
        """Remove the staged snapshot, if one was made."""
        if self.staged is not None:
            shutil.rmtree(self.staged, ignore_errors=True)
            self.staged = None


def input_id(hint: str) -> str:
    """An identifier for an inline input, from the flag before it (`--input-data` ->
    `input_data`), the same rule the local backend applies."""
    ident = re.sub(r"[^A-Za-z0-9_]", "_", hint.lstrip("-")).strip("_")
    if not ident:
        return "input"
    return f"input_{ident}" if ident[0].isdigit() else ident


def pick_input_id(taken: Mapping[str, tuple[str, str, str]], ref_id: str,
                  value: DataInputRef, exact: bool = False) -> tuple[tuple[str, str, str], str]:
    """(datastore, path, mode) of an input and the id it goes by: `ref_id`, or `ref_id_2`,
    `_3`... when another input already has it; the same input keeps its id. `exact`: a named
    input, whose id may not change."""
    key = (value.datastore, value.path.strip("/"), value.mode)
    candidate, n = ref_id, 2
    while candidate in taken and taken[candidate] != key:
        if exact:
            raise ProviderError(f"input id {ref_id!r} is used twice")
        candidate, n = f"{ref_id}_{n}", n + 1
    return key, candidate


class InputTable:
    """Datastore inputs of one run by id, each id used once (named inputs keep theirs, inline
    ones get one from the flag before them), as both SDKs' backends number them. `make`
    builds the SDK's input for an id and (datastore, path, mode)."""

    def __init__(self, make: Callable[[str, tuple[str, str, str]], Any]) -> None:
        self.make = make
        self.made: dict[str, Any] = {}  # id -> the SDK's input
        self.keys: dict[str, tuple[str, str, str]] = {}

    def add(self, ref_id: str, value: DataInputRef, exact: bool = False) -> str:
        """The id `value` goes by, its SDK input made when it is new."""
        key, candidate = pick_input_id(self.keys, ref_id, value, exact)
        if candidate not in self.keys:
            self.made[candidate] = self.make(candidate, key)
            self.keys[candidate] = key
        return candidate

    def add_named(self, inputs: Mapping[str, DataInputRef]) -> None:
        """The run's named inputs, each under its own id (used twice: an error)."""
        for ref_id, value in inputs.items():
            self.add(ref_id, value, exact=True)


class _References(InputTable):
    """Data references of one run (SDK v1's DataReference, mounted or downloaded)."""

    def __init__(self, datastore_for: Callable[[str], Any]) -> None:
        def reference(ref_id: str, key: tuple[str, str, str]) -> Any:
            ref = datastore_for(key[0]).path(key[1], data_reference_name=ref_id)
            return ref.as_mount() if key[2] == "mount" else ref.as_download()

        super().__init__(reference)

    def reference(self, ref_id: str, value: DataInputRef, exact: bool = False) -> str:
        """`$AZUREML_DATAREFERENCE_<id>`, as AML expands it, for the input."""
        return str(self.made[self.add(ref_id, value, exact)])


def render_arguments(arguments: Arguments, refs: _References) -> list[str]:
    """A flag map or a list as strings; DataInputs become data references."""
    return shared_render_arguments(arguments,
                                   lambda hint, item: refs.reference(input_id(hint), item))


def _distribution(s: sdk.Sdk, dist: RunDistribution) -> tuple[Any, int | None]:
    """The SDK's distributed job config and the node count to set, for a distribution."""
    if dist.type == "parameter_server":
        return (s.TensorflowConfiguration(worker_count=dist.worker_count,
                                          parameter_server_count=dist.parameter_server_count),
                dist.node_count)
    if dist.type == "multi_worker":
        return (s.TensorflowConfiguration(worker_count=dist.worker_count,
                                          parameter_server_count=0), dist.node_count)
    if dist.type == "mpi":
        return (s.MpiConfiguration(process_count_per_node=dist.process_count_per_node,
                                   node_count=dist.node_count), dist.node_count)
    return None, None


def _conda_path(conda_file: str, source_dir: Path) -> Path:
    path = Path(conda_file)
    for candidate in (path, source_dir / path, source_dir.parent / path):
        if candidate.is_file():
            return candidate
    raise ProviderError(f"conda_file {conda_file!r} not found (looked next to the manifest "
                        f"and in {source_dir})")


def build_environment(name: str, env: RunEnvironment, use_gpu: bool,
                      secrets: Mapping[str, str], source_dir: Path) -> Any:
    """An Environment: conda file, else pip packages; docker base image when given."""
    s = sdk.load()
    if env.conda_file:
        environment = s.Environment.from_conda_specification(
            name, str(_conda_path(env.conda_file, source_dir)))
    else:
        environment = s.Environment(name)
        environment.python.conda_dependencies = s.CondaDependencies.create(
            pip_packages=list(env.pip))
    if env.docker_image:
        environment.docker.base_image = env.docker_image
    elif use_gpu:
        from azureml.core.environment import DEFAULT_GPU_IMAGE

        environment.docker.base_image = DEFAULT_GPU_IMAGE
    environment.environment_variables = env.values(secrets)
    return environment


def run_tags(request: RunRequest, stack: str) -> dict[str, str]:
    """The user's tags plus the ones amlctl finds its runs by."""
    tags = dict(request.run.tags)
    tags.update({OWNER_TAG: stack, SPEC_HASH_TAG: request.spec_hash,
                 RUN_NAME_TAG: request.name})
    return tags


def build_run(request: RunRequest, stack: str, datastore_for: Callable[[str], Any]) -> BuiltRun:
    """The ScriptRunConfig (and data references, tags) for a run request; no network."""
    with warnings.catch_warnings():  # the SDK's vendored YAML warns about its own API
        warnings.simplefilter("ignore", PendingDeprecationWarning)
        return _build_run(request, stack, datastore_for)


def _build_run(request: RunRequest, stack: str, datastore_for: Callable[[str], Any]
               ) -> BuiltRun:
    s = sdk.load()
    run = request.run
    refs = _References(datastore_for)
    refs.add_named(run.inputs)
    arguments = render_arguments(run.arguments, refs)
    job_config, node_count = _distribution(s, run.distribution)
    environment = build_environment(f"amlctl-{stack}-{request.name}", run.environment,
                                    run.use_gpu, request.secrets, request.source_dir)
    source_dir, staged = request.source_dir, None
    script, command = run.entry_script, run.command
    if run.compat == "batchai":
        staged = stage_with_launcher(request.source_dir)
        source_dir = staged / "snapshot"
        variables = dict(environment.environment_variables or {})
        if script:
            variables["AMLCTL_BATCHAI_ENTRY_SCRIPT"] = script
        else:
            variables["AMLCTL_BATCHAI_COMMAND"] = command
        variables["AMLCTL_BATCHAI_OUTPUTS"] = ",".join(run.outputs)
        if run.role_arguments:
            variables["AMLCTL_BATCHAI_ROLE_ARGS"] = json.dumps(
                {role: render_arguments(args, refs)
                 for role, args in run.role_arguments.items()})
        environment.environment_variables = variables
        script, command = LAUNCHER, None
    elif command:
        command = " ".join([command, *arguments]) if arguments else command
        arguments = []
    config = s.ScriptRunConfig(
        source_directory=str(source_dir), script=script,
        arguments=arguments if script else None, command=command,
        compute_target=run.compute, environment=environment,
        distributed_job_config=job_config,
        max_run_duration_seconds=run.max_run_duration_seconds or DEFAULT_MAX_RUN_SECONDS)
    if node_count is not None:
        config.run_config.node_count = node_count
    config.run_config.data_references = {k: r.to_config() for k, r in refs.made.items()}
    return BuiltRun(config, run_tags(request, stack), dict(refs.made), staged)


def stage_with_launcher(source_dir: Path) -> Path:
    """A temporary copy of the snapshot files plus the Batch AI launcher."""
    from amlctl.runs.snapshot import copy_snapshot

    staged = Path(tempfile.mkdtemp(prefix="amlctl-snapshot-"))
    copy_snapshot(source_dir, staged / "snapshot")
    if (staged / "snapshot" / LAUNCHER).exists():
        raise ProviderError(f"{source_dir} already holds a file named {LAUNCHER}; rename it")
    shutil.copyfile(Path(__file__).with_name("batchai_launcher.py"),
                    staged / "snapshot" / LAUNCHER)
    return staged


# --- the SDK edge -----------------------------------------------------------------------------


def declared_tasks(definition: Mapping[str, Any]) -> list[str]:
    """The processes a v1 run starts, from its run definition as the service returns it: a
    TensorFlow job's parameter servers and workers, an MPI job's ranks (processes per node
    times nodes), else one process per node."""
    nodes = int(definition.get("nodeCount") or 1)
    if str(definition.get("framework") or "").lower() == "tensorflow":
        tf = definition.get("tensorflow") or {}
        return declared(int(tf.get("parameterServerCount") or 0),
                        int(tf.get("workerCount") or nodes))
    if "mpi" in str(definition.get("communicator") or "").lower():
        per_node = int((definition.get("mpi") or {}).get("processCountPerNode") or 1)
        return declared(0, per_node * nodes)
    return declared(0, nodes)


def _timestamp(value: Any) -> float | None:
    if not value:
        return None
    from dateutil.parser import isoparse

    return isoparse(str(value)).timestamp()


def record_of(run: Any) -> RunRecord:
    """A RunRecord from an SDK Run, using the details the listing already carried."""
    dto = run._run_dto  # the listing's payload: no extra request per run
    error = dto.get("error") or None
    if isinstance(error, dict):
        error = (error.get("error") or error).get("message") or json.dumps(error)[:300]
    return RunRecord(
        id=run.id, experiment=run.experiment.name,
        status=STATUS.get(str(dto.get("status") or run.status), str(dto.get("status"))),
        tags=dict(dto.get("tags") or {}),
        created_at=_timestamp(dto.get("created_utc")) or 0.0,
        started_at=_timestamp(dto.get("start_time_utc")),
        ended_at=_timestamp(dto.get("end_time_utc")),
        error=error, target=dto.get("target"))


class SdkRunService:
    """RunService over azureml-core (Experiment, Run)."""

    def __init__(self, workspace: Any, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.ws = workspace
        self.policy = policy

    def _experiment(self, name: str) -> Any:
        s = sdk.load()
        return call(f"opening experiment {name}", lambda: s.Experiment(self.ws, name),
                    self.policy)

    def experiments(self) -> dict[str, dict[str, str]]:
        s = sdk.load()
        found = call("listing experiments", lambda: s.Experiment.list(self.ws), self.policy)
        return {e.name: dict(e.tags or {}) for e in found}

    def ensure_experiment(self, name: str, tags: dict[str, str],
                          remove: list[str]) -> None:
        experiment = self._experiment(name)
        call(f"tagging experiment {name}", lambda: experiment.set_tags(tags), self.policy)
        if remove:
            call(f"untagging experiment {name}", lambda: experiment.remove_tags(remove),
                 self.policy)

    def archive_experiment(self, name: str) -> None:
        experiment = self._experiment(name)
        call(f"archiving experiment {name}", experiment.archive, self.policy)

    def submit(self, experiment: str, config: Any, tags: dict[str, str],
               run_id: str) -> RunRecord:
        exp = self._experiment(experiment)
        attempt = 0
        while True:
            attempt += 1
            found = self._run(run_id)
            if found is not None:  # created earlier (a lost answer, a failed tag write, a peer)
                if attempt == 1:
                    log.info("run %s already exists; not submitting it again", run_id)
                return self._tagged(found, tags)
            try:
                with sdk.captured_output():
                    # tags go in our own, retried request below: the SDK would send them after
                    # the create, and a failure there would be taken for a failed submission
                    run = exp.submit(config, run_id=run_id)
            except Exception as exc:  # the SDK raises anything; classified below
                if self._run(run_id) is not None:
                    continue  # created after all (or by a peer): tag and return it above
                if is_transient(exc) and attempt < self.policy.attempts:
                    wait = self.policy.delay(attempt)
                    log.warning("submitting run %s failed (%s); it does not exist, retry %d/%d "
                                "in %.1fs", run_id, first_line(exc), attempt,
                                self.policy.attempts - 1, wait)
                    self.policy.sleep(wait)
                    continue
                raise failure(f"submitting run {run_id} to {experiment}", exc, attempt) from exc
            return self._tagged(run, tags)

    def _tagged(self, run: Any, tags: dict[str, str]) -> RunRecord:
        """The run with `tags` set (an idempotent write, so it may be retried)."""
        current = dict(run._run_dto.get("tags") or {})
        if any(current.get(k) != v for k, v in tags.items()):
            call(f"tagging run {run.id}", lambda: run.set_tags(tags), self.policy)
            run = self._run(run.id) or run
        return record_of(run)

    def find(self, experiment: str | None, tags: dict[str, str]) -> list[RunRecord]:
        names = [experiment] if experiment else list(self.experiments())
        out: list[RunRecord] = []
        for name in names:
            exp = self._experiment(name)
            out.extend(call(f"listing runs of {name}",
                            lambda e=exp: [record_of(r) for r in e.get_runs(tags=tags)],
                            self.policy))
        return sorted(out, key=lambda r: r.created_at, reverse=True)

    def _run(self, run_id: str) -> Any | None:
        try:
            return call(f"reading run {run_id}", lambda: self.ws.get_run(run_id), self.policy)
        except ProviderError as e:
            if "not found" in str(e).lower() or getattr(e, "status", None) == 404:
                return None
            raise

    def get(self, run_id: str) -> RunRecord | None:
        run = self._run(run_id)
        return record_of(run) if run is not None else None

    def cancel(self, run_id: str) -> RunRecord:
        run = self._run(run_id)
        if run is None:
            raise ProviderError(f"no run {run_id!r}")
        if STATUS.get(run.get_status(), "Running") not in ("Completed", "Failed", "Canceled"):
            call(f"canceling run {run_id}", run.cancel, self.policy)
            run = self._run(run_id) or run  # the status after the cancel request
        return record_of(run)

    def logs(self, run_id: str, follow: bool) -> Iterator[str]:
        run = self._run(run_id)
        if run is None:
            raise ProviderError(f"no run {run_id!r}")
        if follow:
            yield from self._follow(run)
            return
        with tempfile.TemporaryDirectory() as folder:
            files = call(f"downloading logs of {run_id}",
                         lambda: run.get_all_logs(destination=folder), self.policy)
            for path in sorted(files):
                role = role_of(path)
                with open(path, encoding="utf-8", errors="replace") as f:
                    for line in f:
                        yield f"[{role}] {line.rstrip()}"


    def roles(self, run_id: str) -> list[RoleStatus]:
        """The processes the run declares and any other with a log file, each with the last
        line of its log. One read of the run's details gives its status, definition and log
        files (SAS URLs); a run the service has not started has no logs to download."""
        run = self._run(run_id)
        if run is None:
            return []
        details = call(f"reading run {run_id}", run.get_details, self.policy)
        raw = str(details.get("status") or run.status)
        status = STATUS.get(raw, raw)
        tails = ({} if status in NOT_STARTED
                 else log_tails(details.get("logFiles") or {}, self._log_text))
        return role_statuses(status, declared_tasks(details.get("runDefinition") or {}), tails)

    def _log_text(self, name: str, url: str) -> str:
        from azureml._file_utils import download_file_stream

        # one attempt per call (the SDK retries 5 times with sleeps by default): ours retries
        try:
            return str(call(f"downloading log {name}",
                            lambda: download_file_stream(url, max_retries=1), self.policy))
        except AzureCallError as err:
            if err.status == 404:  # listed but gone (or not yet written): shown empty, as on v2
                return ""
            raise

    def _follow(self, run: Any) -> Iterator[str]:
        """Stream what `wait_for_completion(show_output=True)` prints, line by line."""
        lines: queue.Queue[str | None] = queue.Queue()
        failure_: list[BaseException] = []

        def wait() -> None:
            try:
                with sdk.captured_output(sink=lines.put):
                    run.wait_for_completion(show_output=True, raise_on_error=False)
            except Exception as e:  # handed to the reading thread below
                failure_.append(e)
            finally:
                lines.put(None)

        worker = threading.Thread(target=wait, name=f"follow-{run.id}", daemon=True)
        worker.start()
        while (line := lines.get()) is not None:
            yield line
        if failure_:
            raise ProviderError(f"following run {run.id} failed: {first_line(failure_[0])}"
                                ) from failure_[0]
