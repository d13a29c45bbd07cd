"""Golden outputs: the manifest and the Markdown report of four representative conversions.

To regenerate after a deliberate change, run
    pytest --update-golden tests/convert/test_convert_golden.py
and review the diff of tests/convert/golden/ before committing it.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from batchai_corpus import FIXTURES, GOLDEN
from golden import check_golden

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


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_manifest_and_report(name: str, validate: Callable[[Conversion], object],
                                    update_golden: bool) -> None:
    conversion = convert_case(name)
    check_golden(GOLDEN / f"{name}.yaml", conversion.to_yaml(), update_golden)
    check_golden(GOLDEN / f"{name}.md", conversion.report.to_markdown(), update_golden)
    validate(conversion)


def test_conversion_is_deterministic() -> None:
    first, second = convert_case("tensorflow-distributed"), convert_case("tensorflow-distributed")
    assert first.to_yaml() == second.to_yaml()
    assert first.report.to_markdown() == second.report.to_markdown()
