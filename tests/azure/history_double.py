"""An in-memory stand-in for the run history service, at the `RunService` edge.

The fake HTTP service models the run history service (fake_history.py) and `SdkRunService` is
tested against it. This double stays for tests about something else (compute, datastore and
engine behaviour), where a run submission is not the point and a few HTTP round trips per run
would only slow them down.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

from amlctl.providers.azure.runs import RunRecord


@dataclass
class Submission:
    """One call to submit: the real SDK config object and the tags."""

    experiment: str
    config: Any
    tags: dict[str, str]
    record: RunRecord


@dataclass
class HistoryDouble:
    """Experiments and runs kept in dicts; submissions kept for assertions."""

    experiments_by_name: dict[str, dict[str, str]] = field(default_factory=dict)
    runs: dict[str, RunRecord] = field(default_factory=dict)
    submissions: list[Submission] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)

    def experiments(self) -> dict[str, dict[str, str]]:
        return {n: dict(t) for n, t in self.experiments_by_name.items()}

    def ensure_experiment(self, name: str, tags: dict[str, str], remove: list[str]) -> None:
        current = self.experiments_by_name.setdefault(name, {})
        current.update(tags)
        for key in remove:
            current.pop(key, None)

    def archive_experiment(self, name: str) -> None:
        self.archived.append(name)
        self.experiments_by_name.pop(name, None)

    def submit(self, experiment: str, config: Any, tags: dict[str, str],
               run_id: str) -> RunRecord:
        if run_id in self.runs:
            return self.runs[run_id]  # the same id: the run that exists, never a second one
        if experiment not in self.experiments_by_name:
            self.experiments_by_name[experiment] = {}  # AML creates it on first submit
        record = RunRecord(run_id, experiment, "Queued", dict(tags), time.time(),
                           target=config.run_config.target)
        self.runs[run_id] = record
        self.submissions.append(Submission(experiment, config, dict(tags), record))
        return record

    def find(self, experiment: str | None, tags: dict[str, str]) -> list[RunRecord]:
        found = [r for r in self.runs.values()
                 if (experiment is None or r.experiment == experiment)
                 and all(r.tags.get(k) == v for k, v in tags.items())]
        return sorted(found, key=lambda r: r.created_at, reverse=True)

    def get(self, run_id: str) -> RunRecord | None:
        return self.runs.get(run_id)

    def cancel(self, run_id: str) -> RunRecord:
        record = self.runs[run_id]
        if record.status not in ("Completed", "Failed", "Canceled"):
            record = replace(record, status="Canceled", ended_at=time.time())
            self.runs[run_id] = record
        return record

    def logs(self, run_id: str, follow: bool) -> Iterator[str]:
        yield f"[worker_0] run {run_id} log"
