"""A run's life as real processes: queueing for nodes, completion, failure, cancel, limits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from waiting import wait_until

from amlctl.providers.local import pool
from amlctl.providers.local.runs import procs, status
from amlctl.providers.local.runs.spec import build_spec
from amlctl.providers.local.runs.submit import cancel, submit, task_pids, wait_for
from amlctl.providers.local.runs.supervisor import STOP_GRACE_SECONDS
from amlctl.providers.local.store import Store
from amlctl.runs.errors import RunError
from tests.runs.conftest import RunEnv

PS_1_WORKERS_2 = {"type": "parameter_server", "node_count": 2, "worker_count": 2,
                  "parameter_server_count": 1}


def gone(pid: int, timeout: float = 5) -> bool:
    """Whether the process ends (or is a zombie) within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while procs.alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_completion_stops_the_parameter_servers_and_frees_the_nodes(env: RunEnv) -> None:
    row = env.submit(distribution=PS_1_WORKERS_2)
    final = env.wait(row)
    assert final.status == status.COMPLETED, final.error
    assert final.error is None and final.started_at and final.ended_at
    assert all(gone(pid) for pid in task_pids(Path(final.run_dir)))  # the ps included
    assert env.store.pool(env.workspace.id, "cpu")["busy_nodes"] == 0
    assert pool.acquire(env.store, env.workspace.id, "cpu", "probe", 4, 4)  # all 4 free
    pool.release(env.store, "probe")


def test_a_run_that_needs_more_nodes_than_are_free_queues_until_released(env: RunEnv) -> None:
    env.set_max_nodes(2)
    flag = env.tmp / "first-may-finish"
    first = env.submit("first", distribution={"type": "multi_worker", "node_count": 2,
                                              "worker_count": 2},
                       arguments=["--wait-file", str(flag)])
    env.wait_status(first, status.RUNNING)
    second = env.submit("second")
    env.wait_status(second, status.QUEUED)
    # its supervisor asked the pool for a node and was refused (it says so once)
    log = Path(second.run_dir, "system", "supervisor.log")
    wait_until(lambda: "waiting for 1 free node(s) of cpu" in log.read_text(),
               what="the second run's supervisor to be refused a node")
    assert env.store.get_run(second.id).status == status.QUEUED  # still no node for it
    flag.touch()
    done_first = env.wait(first)
    done_second = env.wait(second)
    assert (done_first.status, done_second.status) == (status.COMPLETED, status.COMPLETED)
    assert done_second.started_at >= done_first.ended_at - 0.01


def test_a_failing_worker_fails_the_run_and_stops_the_others(env: RunEnv) -> None:
    flag = env.tmp / "never"
    row = env.submit(distribution=PS_1_WORKERS_2,
                     arguments=["--fail", "worker:1", "--code", "7", "--lines", "15",
                                "--fail-after", "outputs/ps_0.json", "--wait-file", str(flag)])
    final = env.wait(row)
    assert final.status == status.FAILED
    error = final.error or ""
    assert error.startswith("worker:1 exited with code 7")
    assert "about to fail" in error and "worker 1 line 14" in error
    assert "worker 1 line 4" not in error  # only the last lines
    pids = task_pids(Path(final.run_dir))
    assert len(pids) == 3 and all(gone(pid) for pid in pids)  # ps:0 and worker:0 stopped
    assert env.store.pool(env.workspace.id, "cpu")["busy_nodes"] == 0


def test_cancel_stops_every_task(env: RunEnv) -> None:
    row = env.submit(distribution=PS_1_WORKERS_2, arguments=["--sleep", "60"])
    env.wait_status(row, status.RUNNING)
    records = env.records(row, 3)
    asked = cancel(env.store, row.id)
    assert asked.status in (status.CANCELING, status.CANCELED)
    final = env.wait(row)
    assert final.status == status.CANCELED and final.error is None
    assert all(gone(r["pid"]) for r in records.values())
    assert cancel(env.store, row.id).status == status.CANCELED  # no-op once ended


def test_cancel_while_queued(env: RunEnv) -> None:
    env.set_max_nodes(1)
    blocker = env.submit("blocker", arguments=["--sleep", "60"])
    env.wait_status(blocker, status.RUNNING)
    queued = env.submit("queued")
    env.wait_status(queued, status.QUEUED)
    cancel(env.store, queued.id)
    assert env.wait(queued).status == status.CANCELED
    cancel(env.store, blocker.id)
    assert env.wait(blocker).status == status.CANCELED


def test_max_run_duration_cancels_with_the_reason(env: RunEnv) -> None:
    row = env.submit(arguments=["--sleep", "60"], max_run_duration_seconds=1)
    final = env.wait(row)
    assert final.status == status.CANCELED
    assert "max_run_duration_seconds (1 s)" in (final.error or "")
    assert 0.9 <= final.ended_at - final.started_at < 5
    assert all(gone(pid) for pid in task_pids(Path(final.run_dir)))


def test_processes_a_task_leaves_behind_are_stopped(env: RunEnv) -> None:
    (env.source / "spawner.py").write_text(textwrap.dedent("""
        import subprocess, sys, pathlib
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        escaped = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                   start_new_session=True)
        pathlib.Path("outputs/pids").write_text(f"{child.pid} {escaped.pid}")
    """))
    final = env.wait(env.submit(entry_script="spawner.py"))
    assert final.status == status.COMPLETED, final.error
    child, escaped = map(int, Path(final.run_dir, "outputs", "pids").read_text().split())
    assert gone(child) and gone(escaped)


def test_the_run_goes_on_after_the_submitting_process_is_killed(env: RunEnv) -> None:
    flag = env.tmp / "go"
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(Path(__file__).parents[2])!r})
        from amlctl.providers.local.store import Store
        from amlctl.providers.local.runs.spec import build_spec
        from amlctl.providers.local.runs.submit import submit
        store = Store(Path({str(env.home / 'state.db')!r}))
        ws = store.get_workspace("sub-1", "rg-1", "ws-1")
        run = {{"experiment": "exp", "compute": "cpu", "source_directory": "src",
                "entry_script": "task.py", "arguments": ["--wait-file", {str(flag)!r}]}}
        spec = build_spec("detached", run, workspace=ws, max_nodes=4,
                          datastore_dirs={{"default": Path({str(env.datastore)!r})}})
        row = submit(store, ws, Path({str(env.home)!r}), spec, Path({str(env.source)!r}),
                     spec_hash="h")
        print(row.id, flush=True)
        time.sleep(60)
    """)
    submitter = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                                 text=True, start_new_session=True)
    assert submitter.stdout is not None
    run_id = submitter.stdout.readline().strip()
    os.killpg(submitter.pid, signal.SIGKILL)  # the CLI and its whole process group
    submitter.wait()
    row = env.store.get_run(run_id)
    assert row is not None
    env.wait_status(row, status.RUNNING)
    flag.touch()
    final = env.wait(row)
    assert final.status == status.COMPLETED, final.error


def test_source_edits_after_submit_do_not_reach_the_run(env: RunEnv) -> None:
    (env.source / "version.txt").write_text("v1")
    (env.source / "show.py").write_text(textwrap.dedent("""
        import pathlib, sys, time
        flag = pathlib.Path(sys.argv[1])
        while not flag.exists():
            time.sleep(0.02)
        pathlib.Path("outputs/seen").write_text(pathlib.Path("version.txt").read_text())
    """))
    flag = env.tmp / "edited"
    row = env.submit(entry_script="show.py", arguments=[str(flag)])
    (env.source / "version.txt").write_text("v2")
    flag.touch()
    final = env.wait(row)
    assert final.status == status.COMPLETED, final.error
    assert Path(final.run_dir, "outputs", "seen").read_text() == "v1"


def test_a_command_runs_through_the_shell_with_the_arguments(env: RunEnv) -> None:
    row = env.submit(entry_script=None, command="echo \"$AZUREML_ARM_PROJECT_NAME\" > outputs/c;"
                     " python -c 'import sys; print(sys.argv[1:])' >> outputs/c",
                     arguments=["a b", "--flag"])
    final = env.wait(row)
    assert final.status == status.COMPLETED, final.error
    assert Path(final.run_dir, "outputs", "c").read_text() == "exp\n['a b', '--flag']\n"


def test_environment_variables_of_the_run_reach_the_tasks(env: RunEnv) -> None:
    row = env.submit(environment={"env_vars": {"RUN_MODE": "fast"}},
                     arguments=["--mode=$RUN_MODE"])
    final = env.wait(row)
    record = env.records(final, 1)["worker:0"]
    assert record["env"]["RUN_MODE"] == "fast" and record["argv"] == ["--mode=fast"]


def test_submit_refuses_a_missing_entry_script(env: RunEnv) -> None:
    with pytest.raises(RunError, match=r"entry_script 'nope\.py' is not in"):
        env.submit(entry_script="nope.py")


def test_a_node_count_above_max_nodes_fails_clearly(env: RunEnv) -> None:
    env.set_max_nodes(2)  # e.g. the cluster was shrunk after the manifest was validated
    row = env.submit(distribution={"type": "multi_worker", "node_count": 3, "worker_count": 3})
    final = env.wait(row)
    assert final.status == status.FAILED
    assert "needs 3 nodes but compute 'cpu' has max_nodes 2" in (final.error or "")
    assert not task_pids(Path(final.run_dir))


def test_secret_variables_reach_the_tasks_but_not_the_store(env: RunEnv) -> None:
    run = {"experiment": "exp", "compute": "cpu", "source_directory": "src",
           "entry_script": "task.py", "environment": {"env_vars": {"RUN_TOKEN": "x"}},
           "arguments": ["--token=$RUN_TOKEN"]}
    spec = build_spec("secret", run, workspace=env.workspace, max_nodes=4,
                      datastore_dirs={"default": env.datastore},
                      secrets={"RUN_TOKEN": "hunter2"})
    row = submit(env.store, env.workspace, env.home, spec, env.source, spec_hash="s")
    final = env.wait(row)
    assert final.status == status.COMPLETED, final.error
    record = env.records(final, 1)["worker:0"]
    assert record["env"]["RUN_TOKEN"] == "hunter2" and record["argv"] == ["--token=hunter2"]
    assert "hunter2" not in json.dumps(final.spec)
    assert final.spec["environment"]["secret_env_vars"] == ["RUN_TOKEN"]
    assert not list(Path(final.run_dir).glob("secrets*"))  # removed once the run ended


def test_outputs_already_in_the_source_folder_become_the_runs_outputs(env: RunEnv) -> None:
    (env.source / "outputs").mkdir()
    (env.source / "outputs" / "old.txt").write_text("from a local try")
    final = env.wait(env.submit())
    assert final.status == status.COMPLETED, final.error
    outputs = Path(final.run_dir, "outputs")
    assert (outputs / "old.txt").read_text() == "from a local try"
    assert (outputs / "worker_0.json").exists()
    assert Path(final.run_dir, "snapshot", "outputs").resolve() == outputs.resolve()
    assert (env.source / "outputs" / "old.txt").exists()  # the source is never touched


def test_deleting_the_workspace_stops_its_runs(env: RunEnv) -> None:
    row = env.submit(arguments=["--sleep", "60"])
    env.wait_status(row, status.RUNNING)
    pid = env.records(row, 1)["worker:0"]["pid"]
    env.store.delete_workspace(env.workspace.id)
    assert gone(pid)


def test_paths_relative_to_the_callers_folder_work(env: RunEnv,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The CLI opens `.amlctl/state.db` relative to the manifest; the supervisor runs elsewhere.
    monkeypatch.chdir(env.tmp)
    store = Store(Path("home") / "state.db")
    run = {"experiment": "exp", "compute": "cpu", "source_directory": "src",
           "entry_script": "task.py", "arguments": {"--data": {"datastore": "default",
                                                               "path": "mnist"}}}
    spec = build_spec("relative", run, workspace=env.workspace, max_nodes=4,
                      datastore_dirs={"default": Path("datastore")})
    row = submit(store, env.workspace, Path("home"), spec, Path("src"), spec_hash="rel")
    final = wait_for(store, row.id, timeout=15)
    store.close()
    assert final.status == status.COMPLETED, final.error
    assert Path(final.run_dir).is_absolute()
    data = Path(env.records(final, 1)["worker:0"]["env"]["AZUREML_DATAREFERENCE_data"])
    assert data == env.datastore / "mnist"


def test_a_task_that_ignores_sigterm_is_killed_after_the_grace_period(env: RunEnv) -> None:
    (env.source / "stubborn.py").write_text(textwrap.dedent("""
        import json, os, pathlib, signal, time
        task = json.loads(os.environ["TF_CONFIG"])["task"]
        if task["type"] == "ps":
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            pathlib.Path("outputs/ps").write_text(str(os.getpid()))
            time.sleep(600)
        while not pathlib.Path("outputs/ps").exists():
            time.sleep(0.02)
    """))
    row = env.submit(entry_script="stubborn.py", distribution={
        "type": "parameter_server", "worker_count": 1, "parameter_server_count": 1})
    final = env.wait(row, timeout=30)
    assert final.status == status.COMPLETED, final.error
    ps_pid = int(Path(final.run_dir, "outputs", "ps").read_text())
    assert gone(ps_pid, timeout=1)
    assert final.ended_at - final.started_at >= STOP_GRACE_SECONDS - 0.5
