"""What `Run.get_metrics()` (azureml-core) answers, turned into metric series.

The shapes are the SDK's documented ones: a number for a metric logged once, a list for one
logged several times, a dict for a table or row metric, a string for an image's path. The
run-history route itself is not faked here (see docs/metrics.md for the step caveat).
"""

from __future__ import annotations

import math

from amlctl.providers.azure.metrics import series_from_sdk


def test_numbers_and_lists_become_series_in_logging_order() -> None:
    found = series_from_sdk({
        "loss": [2.0, 1.0, 0.5],
        "accuracy": 0.93,
        "epochs": 3,
        "confusion": {"schema_type": "confusion_matrix", "data": {}},
        "sample": "aml://artifactId/ExperimentRun/dcid.x/sample.png",
        "flags": [True, False],
        "diverged": [1.0, float("nan")],
    })
    assert [s.name for s in found] == ["accuracy", "diverged", "epochs", "loss"]
    by_name = {s.name: s for s in found}
    assert by_name["loss"].steps == (0, 1, 2)
    assert by_name["loss"].values == (2.0, 1.0, 0.5)
    assert by_name["accuracy"].values == (0.93,) and by_name["accuracy"].steps == (0,)
    assert by_name["epochs"].values == (3.0,)
    assert math.isnan(by_name["diverged"].last)
    assert by_name["diverged"].maximum == 1.0


def test_no_metrics() -> None:
    assert series_from_sdk({}) == []
