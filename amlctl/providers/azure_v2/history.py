"""A v2 job's logs and metrics, from the run history service every Azure ML job is a run of.

Logs: `jobs.stream` polls the run's details (`GET /history/v1.0/.../runs/NAME/details`) and
downloads the `logFiles` it names (SAS URLs of each process's log in the workspace storage),
but prints only rank 0's log, between banners; `jobs.download` reaches the same files only
once the job has ended, through its default output. amlctl reads the details itself, through
SDK v2's own run history client and HTTP pipeline, so a finished or running job shows every
process's log and `--follow` keeps reading until the job ends, each line prefixed by its role
in the vocabulary every backend uses (`worker:0`, `ps:1`).

Roles (for `amlctl watch`): the processes a job declares (its distribution), and any other
process that has a log file, each with its latest log line.

Metrics: the metric service of run history (`/metric/v2.0/.../runs/NAME/list` and `/full`),
where `mlflow.log_metric` in a job lands through the workspace's MLflow tracking URI; read with
SDK v2's run history client, so no MLflow install is needed to read them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from amlctl.providers.azure.metrics import _number
from amlctl.providers.azure.retry import DEFAULT_POLICY, RetryPolicy, call
from amlctl.providers.azure.roles import (
    NOT_STARTED,
    declared,
    log_tails,
    process_logs,
    role_of,
    role_statuses,
)
from amlctl.providers.base import MetricSeries, RoleStatus

ENDED = ("Completed", "Failed", "Canceled", "NotResponding", "Paused")
FIRST_POLL_S, MAX_POLL_S = 1.0, 10.0


def declared_tasks(job: Any) -> list[str]:
    """The processes a v2 command job starts, named as its log files name them: a
    TensorFlow job's parameter servers and workers, an MPI (or PyTorch) job's ranks, else one
    process per instance."""
    dist = getattr(job, "distribution", None)
    resources = getattr(job, "resources", None)
    instances = int(getattr(resources, "instance_count", None) or 1)
    if dist is not None and hasattr(dist, "worker_count"):  # TensorFlowDistribution
        return declared(int(dist.parameter_server_count or 0), int(dist.worker_count or 1))
    per_instance = int(getattr(dist, "process_count_per_instance", None) or 1)
    return declared(0, per_instance * instances)


class JobHistory:
    """The run history side of one workspace's jobs, through an MLClient."""

    def __init__(self, client: Any, policy: RetryPolicy = DEFAULT_POLICY,
                 sleep: Callable[[float], None] | None = None) -> None:
        self.client = client
        self.policy = policy
        self.sleep = sleep or time.sleep
        self._service: Any = None

    def _history(self) -> Any:
        """SDK v2's run history client, made as `jobs.stream` makes it: the workspace's API
        host from its discovery URL, the job operations' credential and client settings."""
        if self._service is None:
            from azure.ai.ml._restclient.runhistory import RunHistoryClient

            jobs = self.client.jobs
            url = call("finding the workspace's run history service", lambda: jobs._api_url,
                       self.policy)
            self._service = RunHistoryClient(jobs._credential, base_url=url,
                                             **jobs._service_client_kwargs)
        return self._service

    def _scope(self) -> tuple[str, str, str]:
        scope = self.client._operation_scope
        return scope.subscription_id, scope.resource_group_name, scope.workspace_name

    # logs --------------------------------------------------------------------------------------

    def _details(self, run_id: str) -> Any:
        return call(f"reading run {run_id}",
                    lambda: self._history().runs.get_details(*self._scope(), run_id),
                    self.policy)

    def _text(self, name: str, url: str) -> str:
        def fetch() -> str:
            response = self.client.jobs._requests_pipeline.get(url)
            if response.status_code == 404:
                return ""  # listed before the process wrote it
            response.raise_for_status()
            return str(response.text())

        return call(f"downloading log {name}", fetch, self.policy)

    @staticmethod
    def _logs_of(details: Any) -> dict[str, str]:
        return process_logs(dict(getattr(details, "log_files", None) or {}))

    def logs(self, run_id: str) -> Iterator[str]:
        """Every process's log as it is now, file by file."""
        for name, url in self._logs_of(self._details(run_id)).items():
            role = role_of(name)
            for line in self._text(name, url).splitlines():
                yield f"[{role}] {line}"

    def follow(self, run_id: str) -> Iterator[str]:
        """New lines of every process's log until the job ends (polling its details, as
        `jobs.stream` does, more often at first)."""
        seen: dict[str, int] = {}
        wait = FIRST_POLL_S
        while True:
            details = self._details(run_id)
            for name, url in self._logs_of(details).items():
                lines = self._text(name, url).splitlines()
                role = role_of(name)
                for line in lines[seen.get(name, 0):]:
                    yield f"[{role}] {line}"
                seen[name] = max(seen.get(name, 0), len(lines))
            if str(getattr(details, "status", "")) in ENDED:
                return
            self.sleep(wait)
            wait = min(MAX_POLL_S, wait * 1.5)

    def roles(self, run_id: str, run_status: str, tasks: list[str]) -> list[RoleStatus]:
        """Each process of the job (`tasks`, those it declares, and any other whose log file
        is listed), in task order (ps first), with its state and the last line of its log. A
        job the service has not started has no logs: its run history is not read."""
        tails = ({} if run_status in NOT_STARTED
                 else log_tails(dict(getattr(self._details(run_id), "log_files", None) or {}),
                                self._text))
        return role_statuses(run_status, tasks, tails)

    # metrics -----------------------------------------------------------------------------------

    def metrics(self, run_id: str) -> list[MetricSeries]:
        """Every numeric metric of the run with its steps; tables, images and other
        non-numeric entries are left out (as on the v1 backend)."""
        service = self._history().metrics
        sub, rg, ws = self._scope()
        names: list[str] = []
        token = None
        while True:
            body = {"continuationToken": token} if token else {}
            page = call(f"listing metrics of run {run_id}",
                        lambda body=body: service.list_metric(sub, rg, ws, run_id, body),
                        self.policy)
            names += [str(d["metricKey"]["name"]) for d in page.get("value") or []
                      if (d.get("metricKey") or {}).get("name")]
            token = page.get("continuationToken")
            if not token:
                break
        return [s for s in (self._series(service, run_id, n) for n in sorted(set(names)))
                if s is not None]

    def _series(self, service: Any, run_id: str, name: str) -> MetricSeries | None:
        sub, rg, ws = self._scope()
        points: list[tuple[int, float]] = []
        token = None
        while True:
            body = {"metricName": name, **({"continuationToken": token} if token else {})}
            page = call(f"reading metric {name} of run {run_id}",
                        lambda body=body: service.get_full_fidelity_metric(  # type: ignore[misc]
                            sub, rg, ws, run_id, body),
                        self.policy)
            for value in page.get("value") or []:
                number = _number((value.get("data") or {}).get(name))
                if number is None:
                    return None  # not a scalar series
                step = value.get("step")
                points.append((int(step) if step is not None else len(points), number))
            token = page.get("continuationToken")
            if not token:
                break
        if not points:
            return None
        points.sort(key=lambda p: p[0])  # stable: values logged at one step keep their order
        return MetricSeries(name, tuple(p[0] for p in points), tuple(p[1] for p in points))

