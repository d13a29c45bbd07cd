"""A run's metrics from Azure ML run history (SDK v1: `Run.get_metrics()`).

`mlflow.log_metric` in a job (through azureml-mlflow) and v1's `Run.log` land in the same
place. `get_metrics()` answers a number for a metric logged once and a list for one logged
several times, in logging order; it does not return steps, so a value's step is its position
(0, 1, ...). Tables, images and other non-numeric entries are left out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from amlctl.errors import ProviderError
from amlctl.providers.azure.retry import DEFAULT_POLICY, RetryPolicy, call
from amlctl.providers.base import MetricSeries


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value)


def series_from_sdk(raw: Mapping[str, Any]) -> list[MetricSeries]:
    """MetricSeries by name from what `Run.get_metrics()` returned."""
    found = []
    for name, value in sorted(raw.items()):
        items = value if isinstance(value, list) else [value]
        numbers = [_number(v) for v in items]
        if not numbers or any(n is None for n in numbers):
            continue
        values = tuple(n if n is not None else math.nan for n in numbers)
        found.append(MetricSeries(str(name), tuple(range(len(values))), values))
    return found


def read_run_metrics(workspace: Any, run_id: str,
                     policy: RetryPolicy = DEFAULT_POLICY) -> list[MetricSeries]:
    """The metrics of run `run_id` of `workspace` (an azureml Workspace)."""
    run = call(f"reading run {run_id}", lambda: workspace.get_run(run_id), policy)
    if run is None:
        raise ProviderError(f"no run {run_id!r}")
    return series_from_sdk(call(f"reading metrics of run {run_id}", run.get_metrics, policy))
