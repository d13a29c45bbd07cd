"""Each task's state as `watch` shows it, from what the supervisor records, on real runs."""

from __future__ import annotations

import time
from pathlib import Path

from amlctl.providers.base import RoleStatus
from amlctl.providers.local.runs import status
from amlctl.providers.local.runs.roles import role_states
from amlctl.providers.local.runs.submit import cancel
from amlctl.providers.local.store import RunRow
from tests.runs.conftest import RunEnv

PS_1_WORKERS_2 = {"type": "parameter_server", "node_count": 2, "worker_count": 2,
                  "parameter_server_count": 1}


def states(env: RunEnv, row: RunRow) -> dict[str, str]:
    current = env.store.get_run(row.id)
    assert current is not None
    return {r.name: r.state for r in role_states(current)}


def wait_states(env: RunEnv, row: RunRow, wanted: dict[str, str],
                timeout: float = 15) -> None:
    deadline = time.monotonic() + timeout
    while states(env, row) != wanted:
        assert time.monotonic() < deadline, f"{states(env, row)} never became {wanted}"
        time.sleep(0.05)


def test_not_started_run_has_every_task_queued(env: RunEnv) -> None:
    row = env.submit(distribution=PS_1_WORKERS_2, start=False)
    assert role_states(row) == [RoleStatus("ps:0", "Queued"), RoleStatus("worker:0", "Queued"),
                                RoleStatus("worker:1", "Queued")]


def test_tasks_finish_at_different_times(env: RunEnv) -> None:
    release = env.tmp / "release"
    row = env.submit(distribution=PS_1_WORKERS_2,
                     arguments=["--fail", "worker:0", "--code", "0", "--fail-after",
                                str(release), "--lines", "2"])
    # worker:1 finishes at once; worker:0 waits for the release file.
    wait_states(env, row, {"ps:0": "Running", "worker:0": "Running", "worker:1": "Completed"})
    current = env.store.get_run(row.id)
    assert current is not None
    by_name = {r.name: r for r in role_states(current)}
    assert by_name["worker:1"].exit_code == 0
    assert by_name["worker:1"].last_line == "done"
    assert by_name["worker:0"].exit_code is None
    release.write_text("go")
    final = env.wait(row)
    assert final.status == status.COMPLETED
    # The parameter server was stopped at the end, as Azure ML ends it: Completed.
    assert states(env, row) == {"ps:0": "Completed", "worker:0": "Completed",
                                "worker:1": "Completed"}


def test_a_failed_task_and_the_ones_stopped_with_it(env: RunEnv) -> None:
    hold = env.tmp / "never"
    row = env.submit(distribution=PS_1_WORKERS_2,
                     arguments=["--fail", "worker:1", "--code", "7", "--wait-file", str(hold)])
    final = env.wait(row)
    assert final.status == status.FAILED
    current = env.store.get_run(row.id)
    assert current is not None
    by_name = {r.name: r for r in role_states(current)}
    assert (by_name["worker:1"].state, by_name["worker:1"].exit_code) == ("Failed", 7)
    assert by_name["worker:1"].last_line == "about to fail"
    assert by_name["worker:0"].state == by_name["ps:0"].state == "Canceled"


def test_canceled_run(env: RunEnv) -> None:
    hold = env.tmp / "never"
    row = env.submit(distribution=PS_1_WORKERS_2, arguments=["--wait-file", str(hold)])
    wait_states(env, row, {"ps:0": "Running", "worker:0": "Running", "worker:1": "Running"})
    cancel(env.store, row.id)
    assert env.wait(row).status == status.CANCELED
    assert states(env, row) == {"ps:0": "Canceled", "worker:0": "Canceled",
                                "worker:1": "Canceled"}


def test_last_line_reads_only_the_end(tmp_path: Path) -> None:
    from amlctl.providers.local.runs.roles import last_line

    log = tmp_path / "worker_0.log"
    assert last_line(log) is None
    log.write_bytes(b"x" * 100_000 + b"\nstep=3 loss=0.5\n\n  \n")
    assert last_line(log) == "step=3 loss=0.5"
