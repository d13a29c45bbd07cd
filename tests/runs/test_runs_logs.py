"""Run logs: one stream per task, prefixed when several are shown, filtered, followed."""

from __future__ import annotations

import re
import shutil
import threading
from pathlib import Path

import pytest

from amlctl.providers.local.runs import status
from amlctl.providers.local.runs.logs import run_logs
from amlctl.runs.errors import RunError
from tests.runs.conftest import RunEnv

TWO_WORKERS = {"type": "multi_worker", "node_count": 1, "worker_count": 2}


def test_lines_are_prefixed_by_task_when_several_streams_are_shown(env: RunEnv) -> None:
    row = env.submit(distribution=TWO_WORKERS, arguments=["--lines", "2"])
    assert env.wait(row).status == status.COMPLETED
    lines = list(run_logs(env.store, row.id))
    assert lines == ["[worker:0] worker 0 line 0", "[worker:0] worker 0 line 1",
                     "[worker:0] done",
                     "[worker:1] worker 1 line 0", "[worker:1] worker 1 line 1",
                     "[worker:1] done"]


def test_a_role_filter_shows_one_stream_without_prefix(env: RunEnv) -> None:
    row = env.submit(distribution={"type": "parameter_server", "worker_count": 2},
                     arguments=["--lines", "1", "--wait-file", "outputs/ps_0.json"])
    assert env.wait(row).status == status.COMPLETED
    assert list(run_logs(env.store, row.id, role="worker:1")) == ["worker 1 line 0", "done"]
    assert list(run_logs(env.store, row.id, role="ps")) == ["ps 0 line 0"]
    assert len(list(run_logs(env.store, row.id, role="worker"))) == 4
    with pytest.raises(RunError, match="no task 'chief'"):
        list(run_logs(env.store, row.id, role="chief"))


def test_follow_streams_until_the_run_ends(env: RunEnv) -> None:
    flag = env.tmp / "finish"
    row = env.submit(distribution=TWO_WORKERS, arguments=["--lines", "1", "--wait-file",
                                                          str(flag)])
    env.wait_status(row, status.RUNNING)
    seen: list[str] = []
    follower = threading.Thread(
        target=lambda: seen.extend(run_logs(env.store, row.id, follow=True,
                                            poll_seconds=0.05)))
    follower.start()
    env.records(row, 2)
    flag.touch()
    follower.join(timeout=15)
    assert not follower.is_alive()
    assert sorted(seen) == ["[worker:0] done", "[worker:0] worker 0 line 0",
                            "[worker:1] done", "[worker:1] worker 1 line 0"]


def test_unknown_run(env: RunEnv) -> None:
    with pytest.raises(RunError, match="no run 'nope'"):
        list(run_logs(env.store, "nope"))


@pytest.mark.parametrize("removed", ["", "logs"])
def test_logs_of_a_run_whose_folder_is_gone_say_so(env: RunEnv, removed: str) -> None:
    row = env.submit(arguments=["--lines", "1"])
    assert env.wait(row).status == status.COMPLETED
    gone = Path(row.run_dir) / removed if removed else Path(row.run_dir)
    shutil.rmtree(gone)
    for follow in (False, True):
        with pytest.raises(RunError, match=f"run {row.id}: its folder {re.escape(str(gone))} "
                                           "is gone"):
            list(run_logs(env.store, row.id, follow=follow))
