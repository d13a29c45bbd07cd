"""A real local store, a compute, a datastore folder and a tiny task script for run tests."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from amlctl.providers.local.runs import status
from amlctl.providers.local.runs.spec import build_spec
from amlctl.providers.local.runs.submit import cancel, submit, wait_for
from amlctl.providers.local.store import RunRow, Store, WorkspaceRow

# Every task prints --lines lines, records who it is and what it was given in
# outputs/<role>_<index>.json, then behaves as its arguments say. A parameter server serves
# until stopped, as TensorFlow's does; workers that must see it started wait for its record.
TASK_SCRIPT = r'''
import json, os, sys, time
from pathlib import Path

config = json.loads(os.environ.get("TF_CONFIG") or "null")
if config:
    role, index = config["task"]["type"], config["task"]["index"]
elif "OMPI_COMM_WORLD_RANK" in os.environ:
    role, index = "worker", int(os.environ["OMPI_COMM_WORLD_RANK"])
else:
    role, index = "worker", 0
args = sys.argv[1:]

def flag(name, default=None):
    return args[args.index(name) + 1] if name in args else default

for n in range(int(flag("--lines", "0"))):
    print(f"{role} {index} line {n}")
record = {
    "role": role, "index": index, "pid": os.getpid(), "argv": args, "cwd": os.getcwd(),
    "started": time.time(),
    "env": {k: v for k, v in os.environ.items()
            if k.startswith(("AZ", "TF_CONFIG", "OMPI", "PYTHONUNBUFFERED", "RUN_"))},
}
out = Path("outputs") / f"{role}_{index}.json"
out.with_suffix(".tmp").write_text(json.dumps(record))
os.replace(out.with_suffix(".tmp"), out)
if role == "ps":
    time.sleep(600)
if flag("--fail") == f"{role}:{index}":
    while flag("--fail-after") and not Path(flag("--fail-after")).exists():
        time.sleep(0.02)
    print("about to fail")
    sys.exit(int(flag("--code", "3")))
wait = flag("--wait-file")
if wait:
    while not Path(wait).exists():
        time.sleep(0.02)
time.sleep(float(flag("--sleep", "0")))
print("done")
'''


@dataclass
class RunEnv:
    """What a run test needs: the store, its workspace, the home folder, a datastore folder
    and a source folder holding task.py."""

    store: Store
    workspace: WorkspaceRow
    home: Path
    datastore: Path
    source: Path
    tmp: Path

    def submit(self, name: str = "r", source: Path | None = None, start: bool = True,
               **fields: Any) -> RunRow:
        """Build and submit a run; `fields` are manifest run fields."""
        run = {"experiment": "exp", "compute": "cpu", "source_directory": "src",
               "entry_script": "task.py", **fields}
        spec = build_spec(name, run, workspace=self.workspace, max_nodes=self.max_nodes(),
                          datastore_dirs={"default": self.datastore})
        return submit(self.store, self.workspace, self.home, spec, source or self.source,
                      spec_hash=f"hash-{name}", owner="test", start=start)

    def max_nodes(self) -> int:
        compute = self.store.get_object(self.workspace.id, "compute", "cpu")
        assert compute is not None
        return int(compute.attrs["max_nodes"])

    def set_max_nodes(self, count: int) -> None:
        self.store.put_object(self.workspace.id, "compute", "cpu",
                              {"max_nodes": count, "min_nodes": 0,
                               "idle_seconds_before_scaledown": 300}, "test")

    def wait(self, row: RunRow, timeout: float = 15) -> RunRow:
        """The run once it has ended (fails the test after `timeout`)."""
        final = wait_for(self.store, row.id, timeout=timeout)
        assert final.status in status.TERMINAL, f"{row.id} still {final.status}"
        return final

    def wait_status(self, row: RunRow, wanted: str, timeout: float = 10) -> RunRow:
        current = wait_for(self.store, row.id, timeout=timeout, until=frozenset({wanted}))
        assert current.status == wanted, f"{row.id} is {current.status}, not {wanted}"
        return current

    def records(self, row: RunRow, count: int | None = None, timeout: float = 10
                ) -> dict[str, dict[str, Any]]:
        """What each task wrote about itself, by task name (waits for `count` of them)."""
        folder = Path(row.run_dir) / "outputs"
        deadline = time.monotonic() + timeout
        while True:
            found = {f"{p.stem.replace('_', ':')}": json.loads(p.read_text())
                     for p in folder.glob("*.json")}
            if count is None or len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[RunEnv]:
    home = tmp_path / "home"
    store = Store(home / "state.db")
    workspace = store.create_workspace("sub-1", "rg-1", "ws-1", "westeurope", {}, "test")
    datastore = tmp_path / "datastore"
    (datastore / "mnist").mkdir(parents=True)
    (datastore / "mnist" / "digits.txt").write_text("0123456789\n")
    source = tmp_path / "src"
    source.mkdir()
    (source / "task.py").write_text(TASK_SCRIPT)
    run_env = RunEnv(store, workspace, home, datastore, source, tmp_path)
    run_env.set_max_nodes(4)
    yield run_env
    for row in store.list_runs(workspace.id):  # leave no supervisor or task behind
        if row.status not in status.TERMINAL:
            cancel(store, row.id)
    for row in store.list_runs(workspace.id):
        wait_for(store, row.id, timeout=15)
    store.close()
