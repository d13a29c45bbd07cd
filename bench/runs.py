"""Run start-up benchmark: from submit to every task process started, against interpreter start.

    python bench/runs.py [--repeat N]

In a temp folder it sets up a local store, a compute and a source folder whose script writes
a timestamp file as its first statement, then, N times:
1. baseline: start a plain interpreter running that same first statement, time from just
   before the spawn to its timestamp (the least a task can cost);
2. submit a run of 1 parameter server + 4 workers over 2 nodes and time from just before
   `submit` to the last of the 5 timestamps (snapshot, record, supervisor start, queue,
   prepare, 5 task starts on however many cores there are).
It prints the medians, the overhead (run minus baseline; target <= 1 s) and the ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amlctl.providers.local.runs import status
from amlctl.providers.local.runs.spec import build_spec
from amlctl.providers.local.runs.submit import submit, wait_for
from amlctl.providers.local.store import Store

TARGET_OVERHEAD_SECONDS = 1.0
STAMP = ("import os, time, pathlib; pathlib.Path(os.environ.get('STAMP_DIR', 'outputs'), "
         "os.environ.get('STAMP_NAME', str(os.getpid()))).write_text(repr(time.time()))")
TASK_SCRIPT = STAMP + "\n" + """
import json, sys
task = json.loads(os.environ["TF_CONFIG"])["task"]
if task["type"] == "ps":
    time.sleep(600)  # parameter servers serve until stopped
"""


def baseline(folder: Path) -> float:
    """Seconds from spawn to the first statement of a plain interpreter."""
    folder.mkdir(parents=True, exist_ok=True)
    started = time.time()
    subprocess.run([sys.executable, "-c", STAMP], check=True,
                   env={"STAMP_DIR": str(folder), "STAMP_NAME": "t"})
    return float((folder / "t").read_text()) - started


def one_run(store: Store, home: Path, source: Path, datastore: Path, n: int) -> float:
    """Seconds from submit to the last of the 5 tasks' first statement."""
    workspace = store.get_workspace("sub", "rg", "ws")
    assert workspace is not None
    run = {"experiment": "bench", "compute": "cpu", "source_directory": "src",
           "entry_script": "task.py",
           "distribution": {"type": "parameter_server", "node_count": 2, "worker_count": 4,
                            "parameter_server_count": 1}}
    spec = build_spec("bench", run, workspace=workspace, max_nodes=2,
                      datastore_dirs={"default": datastore})
    started = time.time()
    row = submit(store, workspace, home, spec, source, spec_hash=f"bench-{n}")
    final = wait_for(store, row.id, timeout=60)
    if final.status != status.COMPLETED:
        raise SystemExit(f"benchmark run ended {final.status}: {final.error}")
    stamps = [float(p.read_text()) for p in Path(final.run_dir, "outputs").iterdir()]
    if len(stamps) != 5:
        raise SystemExit(f"expected 5 task timestamps, found {len(stamps)}")
    return max(stamps) - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="runs to take the median of")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="amlctl-bench-runs-") as tmp:
        root = Path(tmp)
        home, source, datastore = root / "home", root / "src", root / "datastore"
        source.mkdir()
        datastore.mkdir()
        (source / "task.py").write_text(TASK_SCRIPT)
        store = Store(home / "state.db")
        workspace = store.create_workspace("sub", "rg", "ws", "local", {}, "bench")
        store.put_object(workspace.id, "compute", "cpu", {"max_nodes": 2, "min_nodes": 0,
                                                          "idle_seconds_before_scaledown": 0},
                         "bench")
        base, runs = [], []
        for n in range(args.repeat):
            base.append(baseline(root / "baseline" / str(n)))
            runs.append(one_run(store, home, source, datastore, n))
        store.close()
    base_s, run_s = statistics.median(base), statistics.median(runs)
    overhead = run_s - base_s
    print(f"interpreter start (baseline):        {base_s:7.3f} s   (median of {args.repeat})")
    print(f"submit -> all 5 tasks started:       {run_s:7.3f} s   "
          f"(min {min(runs):.3f}, max {max(runs):.3f})")
    print(f"overhead beyond interpreter start:   {overhead:7.3f} s   "
          f"target <= {TARGET_OVERHEAD_SECONDS:.1f} s: "
          f"{'ok' if overhead <= TARGET_OVERHEAD_SECONDS else 'MISSED'}")
    print(f"ratio run / baseline:                {run_s / base_s:7.1f}x")


if __name__ == "__main__":
    main()
