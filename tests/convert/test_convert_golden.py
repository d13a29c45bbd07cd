"""Golden outputs: the manifest and the Markdown report of four representative conversions.

To regenerate after a deliberate change, run
    AMLCTL_UPDATE_GOLDEN=1 pytest tests/convert/test_convert_golden.py
and review the diff of tests/convert/golden/ before committing it.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from batchai_corpus import FIXTURES, GOLDEN

from amlctl.convert import Conversion, convert_batchai

CASES = {
    # distributed TensorFlow: parameter servers, per-role arguments, outputs, blob input
    "tensorflow-distributed": ([], ["TensorFlow__TensorFlow-GPU-Distributed.job.json"]),
    # Horovod: MPI distribution, pip from the job preparation
    "horovod-tensorflow": ([], ["Horovod__Horovod-Tensorflow.job.json"]),
    # CNTK BrainScript, API 2017-09-01-preview: a command with inputs and MPI
    "cntk-brainscript-distributed": ([], ["CNTK__CNTK-GPU-BrainScript-Distributed.job.json"]),
    # a cluster: retired size, manual scale, admin user, password and key, file server
    "cluster-putcluster": (["rest-2018-05-01__PutCluster.request-body.cluster.json"], []),
}


def convert_case(name: str) -> Conversion:
    clusters, jobs = CASES[name]
    return convert_batchai([FIXTURES / c for c in clusters], [FIXTURES / j for j in jobs])


def compare(path: Path, actual: str) -> None:
    if os.environ.get("AMLCTL_UPDATE_GOLDEN"):
        path.write_text(actual, encoding="utf-8")
    assert path.is_file(), f"{path.name} missing: run with AMLCTL_UPDATE_GOLDEN=1 to create it"
    assert actual == path.read_text(encoding="utf-8"), (
        f"{path.name} differs from the conversion; if the change is intended, regenerate "
        "with AMLCTL_UPDATE_GOLDEN=1 and review the diff")


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_manifest_and_report(name: str, validate: Callable[[Conversion], object]) -> None:
    conversion = convert_case(name)
    compare(GOLDEN / f"{name}.yaml", conversion.to_yaml())
    compare(GOLDEN / f"{name}.md", conversion.report.to_markdown())
    validate(conversion)


def test_conversion_is_deterministic() -> None:
    first, second = convert_case("tensorflow-distributed"), convert_case("tensorflow-distributed")
    assert first.to_yaml() == second.to_yaml()
    assert first.report.to_markdown() == second.report.to_markdown()
