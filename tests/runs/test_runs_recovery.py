"""ensure_supervised: a run whose supervisor never started or died is repaired."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from waiting import wait_until

from amlctl.providers.local.provider import LocalProvider
from amlctl.providers.local.runs import procs, status
from amlctl.providers.local.runs.submit import (
    cancel,
    ensure_supervised,
    reconcile,
    spawn_supervisor,
)
from amlctl.providers.local.runs.supervisor import MODULE
from tests.runs.conftest import RunEnv


def test_a_run_recorded_but_never_started_gets_its_supervisor(env: RunEnv) -> None:
    # As if the CLI was SIGKILLed between recording the run and starting its supervisor.
    row = env.submit(start=False)
    # no process was started that could move it on: it stays as recorded
    assert env.store.get_run(row.id).status == status.NOT_STARTED
    again = ensure_supervised(env.store, row.id)
    assert again.supervisor_pid
    # either its supervisor is at work, or it has already moved the run on
    assert status.supervisor_alive(again.supervisor_pid, row.id, MODULE) or (
        env.store.get_run(row.id).status != status.NOT_STARTED)
    assert env.wait(row).status == status.COMPLETED
    assert ensure_supervised(env.store, row.id).status == status.COMPLETED  # no-op when ended


def test_a_run_whose_supervisor_died_while_running_is_failed_and_cleaned_up(env: RunEnv
                                                                           ) -> None:
    row = env.submit(arguments=["--sleep", "60"])
    running = env.wait_status(row, status.RUNNING)
    task_pid = env.records(row, 1)["worker:0"]["pid"]
    assert running.supervisor_pid
    os.kill(running.supervisor_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while status.supervisor_alive(running.supervisor_pid, row.id, MODULE):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert procs.alive(task_pid)  # the orphaned task is still there
    repaired = ensure_supervised(env.store, row.id)
    assert repaired.status == status.FAILED
    assert "supervisor" in (repaired.error or "") and "stopped unexpectedly" in repaired.error
    assert "Running" in repaired.error
    assert not procs.alive(task_pid)
    assert env.store.pool(env.workspace.id, "cpu")["busy_nodes"] == 0


def test_a_second_supervisor_for_the_same_run_steps_aside(env: RunEnv) -> None:
    flag = env.tmp / "go"
    row = env.submit(arguments=["--wait-file", str(flag)])
    env.wait_status(row, status.RUNNING)
    first = env.store.get_run(row.id).supervisor_pid
    second = spawn_supervisor(env.store, row.id)  # e.g. two recoveries racing
    # the second has run its course (exited) before we look at what it left
    wait_until(lambda: not procs.alive(second), what="the second supervisor to exit")
    log = Path(row.run_dir, "system", "supervisor.log").read_text()
    assert f"run {row.id} already has a live supervisor" in log
    assert env.store.get_run(row.id).supervisor_pid == first
    assert env.store.get_run(row.id).status == status.RUNNING
    flag.touch()
    assert env.wait(row).status == status.COMPLETED


def test_a_queued_run_whose_supervisor_died_gets_a_new_one(env: RunEnv) -> None:
    env.set_max_nodes(1)
    flag = env.tmp / "go"
    blocker = env.submit("blocker", arguments=["--wait-file", str(flag)])
    env.wait_status(blocker, status.RUNNING)
    queued = env.wait_status(env.submit("queued"), status.QUEUED)
    assert queued.supervisor_pid
    os.kill(queued.supervisor_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while status.supervisor_alive(queued.supervisor_pid, queued.id, MODULE):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert ensure_supervised(env.store, queued.id).supervisor_pid != queued.supervisor_pid
    flag.touch()
    assert env.wait(blocker).status == status.COMPLETED
    assert env.wait(queued).status == status.COMPLETED


def test_a_cancel_of_a_run_without_supervisor_ends_it_at_once(env: RunEnv) -> None:
    row = env.submit(start=False)
    assert cancel(env.store, row.id).status == status.CANCELED
    # a supervisor that starts late finds the run over and leaves it alone
    late = spawn_supervisor(env.store, row.id)
    wait_until(lambda: not procs.alive(late), what="the late supervisor to exit")
    assert env.store.get_run(row.id).status == status.CANCELED


def test_every_read_fails_a_run_whose_supervisor_was_killed_and_stops_its_tasks(
    env: RunEnv,
) -> None:
    # A parameter server sleeps 600 s; workers wait for a file that never comes.
    flag = env.tmp / "never"
    row = env.submit(distribution={"type": "parameter_server", "node_count": 1,
                                   "worker_count": 1, "parameter_server_count": 1},
                     arguments=["--wait-file", str(flag)])
    running = env.wait_status(row, status.RUNNING)
    records = env.records(row, 2)
    task_pids = [records["ps:0"]["pid"], records["worker:0"]["pid"]]
    os.kill(running.supervisor_pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while procs.alive(running.supervisor_pid):
        assert time.monotonic() < deadline
        time.sleep(0.02)
    assert all(procs.alive(pid) for pid in task_pids)  # orphans, still running

    provider = LocalProvider({"name": "ws-1", "subscription_id": "sub-1",
                              "resource_group": "rg-1"}, "test", env.home)
    try:
        [seen] = provider.list_runs()  # what `amlctl runs`, `status` and `plan` read
        assert seen.status == status.FAILED
        assert f"the run's supervisor (pid {running.supervisor_pid}) stopped unexpectedly " \
               "while the run was Running" in (seen.error or "")
        assert not [pid for pid in task_pids if procs.alive(pid)]
        assert provider.get_run(row.id).status == status.FAILED
    finally:
        provider.close()
    assert env.store.pool(env.workspace.id, "cpu")["busy_nodes"] == 0


def test_a_recycled_pid_is_not_taken_for_the_supervisor(env: RunEnv) -> None:
    flag = env.tmp / "go"
    row = env.submit(arguments=["--wait-file", str(flag)])
    running = env.wait_status(row, status.RUNNING)
    assert running.supervisor_started == procs.start_time(running.supervisor_pid)
    # Same pid and command line, other start time: another process.
    assert status.supervisor_alive(running.supervisor_pid, row.id, MODULE,
                                   running.supervisor_started)
    assert not status.supervisor_alive(running.supervisor_pid, row.id, MODULE,
                                       (running.supervisor_started or 0) + 1)
    env.store.update_run(row.id, supervisor_started=(running.supervisor_started or 0) + 1)
    ended = reconcile(env.store, env.store.get_run(row.id))
    assert ended.status == status.FAILED
    flag.touch()
    env.wait(row)
    assert env.store.get_run(row.id).status == status.FAILED


def test_a_run_that_ended_normally_is_not_touched_by_a_read(env: RunEnv) -> None:
    row = env.submit()
    final = env.wait(row)
    assert final.status == status.COMPLETED
    assert reconcile(env.store, final) == final
