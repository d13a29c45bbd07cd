"""One vocabulary for a run's processes on every backend: Azure ML's log file names (v1's
legacy and common runtimes, v2) map to the local backend's task names."""

from __future__ import annotations

import pytest

from amlctl.errors import ProviderError
from amlctl.providers.logroles import only_role, role_of_log, selects


@pytest.mark.parametrize(("stem", "task"), [
    ("std_log_ps_0", "ps:0"),              # common runtime, TensorFlow parameter server
    ("std_log_worker_1", "worker:1"),
    ("70_driver_log_ps_0", "ps:0"),        # v1 legacy runtime
    ("70_driver_log_worker_12", "worker:12"),
    ("std_log_process_2", "worker:2"),     # per-process (MPI rank) logs
    ("70_driver_log_3", "worker:3"),
    ("std_log", "worker:0"),               # the one process of a single-process run
    ("70_driver_log", "worker:0"),
    ("execution-wrapper", "execution-wrapper"),  # no process writes it: keeps its stem
    ("20_image_build_log", "20_image_build_log"),
])
def test_azure_log_names_map_to_tasks(stem: str, task: str) -> None:
    assert role_of_log(stem) == task


def test_a_selector_is_a_task_or_a_whole_role() -> None:
    assert selects("worker:1", "worker:1")
    assert not selects("worker:1", "worker:10")
    assert selects("worker", "worker:10") and not selects("worker", "ps:0")
    assert selects("execution-wrapper", "execution-wrapper")
    assert not selects("work", "worker:0")


def test_filtering_lines_names_what_there_is_when_nothing_matches() -> None:
    lines = ["[ps:0] a", "[worker:0] b", "[worker:1] c", "[worker:10] d"]
    assert list(only_role(lines, "worker:1", "r1")) == ["[worker:1] c"]
    assert list(only_role(lines, None, "r1")) == lines
    with pytest.raises(ProviderError, match=r"no process 'chief' in the logs of run r1; "
                                            r"choose one of: ps, worker, ps:0, worker:0"):
        list(only_role(lines, "chief", "r1"))
