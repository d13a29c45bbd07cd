"""Upload benchmark: each figure printed beside its baseline from the same run.

    python bench/uploads.py [--quick] [--big] [--workers N]

In a temp folder it writes a tree of many small files and a few large ones, then measures:
1. first sync (list + plan + apply into a FolderFileStore) against `cp -r` of the same
   tree, and against `cp -r` followed by `sync` (cp makes nothing durable, the sync does
   fsync every file); target: cp time / our time >= 0.7;
2. second sync with nothing changed, in fresh objects as a new process would use them;
   targets: <= 0.5 s and >= 20x faster than the first;
(1 and 2 are run --repeat times, taking turns with cp; the fastest run of each counts);
3. peak memory (VmHWM of a child process, Linux) syncing one large file against one 10 MB
   file; target: about equal. The large file is 512 MiB, or 2 GiB with --big;
4. whole processes against `rsync -a` on a tree of 10,000 small files (2,000 with --quick):
   the first `amlctl apply` of a manifest holding one upload of it against `rsync -a` into an
   empty folder (target: within 1.2x), and a no-op `amlctl plan` and `apply` against a
   no-op `rsync -a` (target: the import floor, `python -c "import typer, pydantic,
   ruamel.yaml, jinja2"`, plus 1.5x rsync's time); a no-op `amlctl plan` of the same
   manifest over a 1-file tree is printed beside it (the part that does not grow with the
   tree); without rsync installed the rsync figures are skipped, saying so. `rsync -a; sync`
   is printed beside the first upload as a second reference (amlctl makes its files durable,
   rsync does not); every run starts after a `sync`, with no dirty data left to flush;
   the same first-upload figures on the issue's own tree (2,000 small files + 3 x 8 MiB);
5. a small upload, the quickstart's 2 files, into a new store: plan, copy and make durable;
   target: well under 0.1 s.

Run it on a quiet filesystem: ext4 without a journal (as on some virtual machines) skips,
for up to 6 minutes, the inodes freed by a mass deletion when it makes new files, and file
creation there runs 2-5x slower meanwhile (for rsync as for amlctl); a previous run's
clean-up is such a deletion, so leave some minutes between runs.

The tree is made, then left to age past the hash cache's racy window (2 s) before the first
sync, as data usually is: files written within that window of being hashed are read once
more by the next plan (see amlctl/uploads/hashcache.py), which is printed separately.
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from amlctl.uploads import (  # noqa: E402 - after the path set-up above
    DEFAULT_WORKERS,
    FolderFileStore,
    HashCache,
    apply_sync,
    folder_store,
    plan_sync,
)
from amlctl.uploads.hashcache import RACY_WINDOW_NS  # noqa: E402

MiB = 1 << 20

_CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from amlctl.uploads import FolderFileStore, HashCache, apply_sync, plan_sync
work = Path(sys.argv[2])
with FolderFileStore(work / "dst", work / "index.db") as store, \\
        HashCache(work / "cache.db") as cache:
    plan = plan_sync(work / "src", store.list_files(), cache=cache)
    apply_sync(plan, work / "src", store, cache=cache)
# VmHWM, not ru_maxrss: Linux carries the parent's peak into ru_maxrss across fork+exec
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller tree (CI smoke run)")
    parser.add_argument("--big", action="store_true", help="memory case with a 2 GiB file")
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--repeat", type=int, default=3, help="turns of cp and first sync")
    parser.add_argument("--cli-only", action="store_true",
                        help="only the whole-process and small-upload figures (4 and 5)")
    args = parser.parse_args()
    small_files, large_files, large_mib = (2_000, 3, 8) if args.quick else (10_000, 3, 64)
    big_mib = 2048 if args.big else (64 if args.quick else 512)
    with tempfile.TemporaryDirectory(prefix="amlctl-bench-") as tmp:
        work = Path(tmp)
        if args.cli_only:
            bench_cli(work, 2_000 if args.quick else 10_000, max(3, args.repeat))
            print()
            bench_cli_issue_tree(work, max(3, args.repeat))
            print()
            bench_small(work)
            return
        print(f"tree: {small_files} small files (256 B - 8 KiB) + {large_files} x "
              f"{large_mib} MiB; workers: {args.workers}")
        made = make_tree(work / "src", small_files, large_files, large_mib)
        first, second = bench_sync(work, made, args.workers, args.repeat)
        memory = bench_memory(work, big_mib)
        print()
        bench_cli(work, 2_000 if args.quick else 10_000, max(3, args.repeat))
        print()
        bench_cli_issue_tree(work, max(3, args.repeat))
        print()
        bench_small(work)
    print()
    print("targets: first >= 0.70 of cp -r; second <= 0.5 s and >= 20x faster than the first;"
          " memory ratio about 1")
    print(f"first sync vs cp -r: {first:.2f}   second sync: {second[0]:.3f} s "
          f"({second[1]:.0f}x faster)   memory ratio: {memory:.2f}")


def make_tree(src: Path, small_files: int, large_files: int, large_mib: int) -> float:
    """Write the tree; returns when the last file was written (time.time)."""
    rng = random.Random(7)
    per_folder = 100
    for index in range(small_files):
        folder = src / f"part{index // per_folder:04d}"
        if index % per_folder == 0:
            folder.mkdir(parents=True)
        (folder / f"item{index:06d}.bin").write_bytes(rng.randbytes(rng.randint(256, 8192)))
    block = rng.randbytes(MiB)
    for index in range(large_files):
        with open(src / f"large{index}.bin", "wb") as fh:
            for chunk in range(large_mib):
                fh.write(block[chunk % 7 :] + block[: chunk % 7])
    return time.time()


def bench_sync(
    work: Path, made: float, workers: int, repeat: int
) -> tuple[float, tuple[float, float]]:
    src = work / "src"
    settle(made)  # see module doc

    def one_sync(tag: str) -> tuple[int, int]:
        with FolderFileStore(work / f"dst{tag}", work / f"index{tag}.db") as store, \
                HashCache(work / f"cache{tag}.db") as cache:
            plan = plan_sync(src, store.list_files(), cache=cache)
            result = apply_sync(plan, src, store, workers=workers, cache=cache)
        return len(result.sent), plan.hashed

    # cp and our first sync take turns, `repeat` times, each going first every other turn;
    # the fastest run of each is kept, as the one least disturbed by the rest of the machine.
    # Nothing is deleted until the end: ext4 skips recently deleted inodes when it creates
    # files (for minutes), which slows file creation after a big delete.
    cp_runs: list[float] = []
    cp_sync_runs: list[float] = []
    first_runs: list[float] = []
    first_durable: list[float] = []  # of each first sync, seconds waiting on the disk
    second_runs: list[float] = []
    cp_cpu: list[float] = []  # CPU seconds (user + system)
    first_cpu: list[float] = []
    sent = 0

    def run_cp(turn: int) -> None:
        command = ["cp", "-r", str(src), str(work / f"cp{turn}")]
        before = cpu_seconds(resource.RUSAGE_CHILDREN)
        cp_runs.append(timed(partial(subprocess.run, command, check=True)))
        cp_cpu.append(cpu_seconds(resource.RUSAGE_CHILDREN) - before)
        cp_sync_runs.append(cp_runs[-1] + timed(lambda: subprocess.run(["sync"], check=True)))

    def run_ours(turn: int) -> None:
        nonlocal sent
        start, before = time.perf_counter(), cpu_seconds(resource.RUSAGE_SELF)
        with DurableClock() as durable:
            sent, _ = one_sync(str(turn))
        first_runs.append(time.perf_counter() - start)
        first_durable.append(durable.seconds)
        first_cpu.append(cpu_seconds(resource.RUSAGE_SELF) - before)
        subprocess.run(["sync"], check=True)
        start = time.perf_counter()
        sent_again, hashed = one_sync(str(turn))
        second_runs.append(time.perf_counter() - start)
        assert sent_again == 0 and hashed == 0, "second sync sent or read files"

    for turn in range(repeat):
        order = (run_cp, run_ours) if turn % 2 == 0 else (run_ours, run_cp)
        for step in order:
            step(turn)
    cp_s, cp_sync_s, first_s, second_s = (
        min(runs) for runs in (cp_runs, cp_sync_runs, first_runs, second_runs))

    def runs_text(runs: list[float]) -> str:
        return "runs " + " ".join(f"{r:.3f}" for r in runs)

    print(f"cp -r:                   {cp_s:7.3f} s   {runs_text(cp_runs)}")
    print(f"cp -r; sync:             {cp_sync_s:7.3f} s   {runs_text(cp_sync_runs)}")
    print(f"first sync ({sent} files): {first_s:7.3f} s   {runs_text(first_runs)}")
    print(f"  ratio cp / ours: {cp_s / first_s:.2f}   ratio (cp; sync) / ours: "
          f"{cp_sync_s / first_s:.2f}")
    print(f"  CPU seconds, fastest run: cp {min(cp_cpu):.3f}, ours {min(first_cpu):.3f}")
    waited = first_durable[first_runs.index(first_s)]
    print(f"  of the fastest first sync, waiting for its data on disk before publishing "
          f"(fsync/syncfs): {waited:.3f} s ({waited / first_s:.0%}); cp -r waits for none")
    print(f"second sync (unchanged): {second_s:7.3f} s   {runs_text(second_runs)}; "
          f"{first_s / second_s:.0f}x faster than the first; files read: 0")
    return cp_s / first_s, (second_s, first_s / second_s)


class DurableClock:
    """While on, adds up the seconds the stores spend in `make_durable`: the wait for the
    data on disk that precedes publishing (one syncfs for many files)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._real = folder_store.make_durable

    def __enter__(self) -> DurableClock:
        real = self._real

        def timed_durable(*args: Any, **kwargs: Any) -> None:
            start = time.perf_counter()
            try:
                real(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start  # commits never overlap

        folder_store.make_durable = timed_durable
        return self

    def __exit__(self, *exc: object) -> None:
        folder_store.make_durable = self._real


def bench_memory(work: Path, big_mib: int) -> float:
    peaks = {}
    for label, size in (("10 MB", 10 * 1000 * 1000), (f"{big_mib} MiB", big_mib * MiB)):
        case = work / f"mem-{size}"
        (case / "src").mkdir(parents=True)
        with open(case / "src" / "data.bin", "wb") as fh:
            block = random.Random(size).randbytes(MiB)
            for offset in range(0, size, MiB):
                fh.write(block[: min(MiB, size - offset)])
        out = subprocess.run(
            [sys.executable, "-c", _CHILD, str(ROOT), str(case)],
            check=True, capture_output=True, text=True,
        ).stdout
        peaks[label] = int(out.split()[-1])  # KiB on Linux
        shutil.rmtree(case)
    small, big = peaks.values()
    for label, kib in peaks.items():
        print(f"peak memory syncing {label:>9}: {kib / 1024:6.1f} MiB")
    print(f"memory ratio big/small: {big / small:.2f}")
    return big / small


CLI_MANIFEST = """\
version: 1
name: bench
workspace:
  name: bench-ws
  subscription_id: "00000000-0000-0000-0000-000000000000"
  resource_group: bench-rg
  location: westeurope
uploads:
  data: {datastore: default, src_dir: data, target_path: data}
"""


def settle(made: float) -> None:
    """No dirty data left to flush, and the tree made at `made` older than the hash cache's
    racy window (as data usually is)."""
    subprocess.run(["sync"], check=True)
    time.sleep(max(0.0, made + RACY_WINDOW_NS / 1e9 + 0.1 - time.time()))


def timed_process(argv: list[str], cwd: Path, home: Path | None = None,
                  then_sync: bool = False) -> tuple[float, float]:
    """Wall and CPU seconds (user + system) of a whole process run in cwd (and of a `sync`
    after it, with then_sync), amlctl's state in `home` if given; it must succeed. This
    checkout is imported first; no AMLCTL_* setting of the caller leaks in, and bytecode is
    written (a run without it compiles every module each time)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AMLCTL_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    if home is not None:
        env["AMLCTL_HOME"] = str(home)
    start = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed")
    if then_sync:
        subprocess.run(["sync"], check=True)
    return time.perf_counter() - start, usage.ru_utime + usage.ru_stime


def bench_cli(work: Path, files: int, repeat: int) -> None:
    """Whole `amlctl` processes against `rsync -a` on the same tree (see module doc, 4)."""
    rsync = shutil.which("rsync")
    project = work / "cli"
    made = make_tree(project / "data", files, 0, 0)
    (project / "amlctl.yaml").write_text(CLI_MANIFEST)
    amlctl = [sys.executable, "-m", "amlctl"]
    floor = [sys.executable, "-c", "import typer, pydantic, ruamel.yaml, jinja2"]
    settle(made)

    cpu: dict[str, list[float]] = {}  # CPU seconds (user + system) by what ran

    def run(argv: list[str], home: Path | None = None, label: str = "",
            cwd: Path = project) -> float:
        wall, used = timed_process(argv, cwd, home)
        cpu.setdefault(label, []).append(used)
        return wall

    # The same manifest over a 1-file tree: what a plan costs whatever the tree (imports,
    # manifest, state), to split the no-op figures into a fixed and a per-file part.
    single = work / "cli-single"
    (single / "data").mkdir(parents=True)
    (single / "data" / "one.bin").write_bytes(b"1")
    (single / "amlctl.yaml").write_text(CLI_MANIFEST)
    run([*amlctl, "validate"], label="warm-up")  # bytecode written, caches warm
    run([*amlctl, "apply", "--auto-approve"], work / "home-single", "warm-up", cwd=single)
    print(f"whole processes, {files} files ({'rsync ' + rsync if rsync else 'rsync absent'}):")
    if rsync is None:
        print("  rsync is NOT installed: the rsync baselines below are skipped. Install it "
              "(e.g. apt-get install rsync) to get the ratios.")
    ours_first: list[float] = []
    rsync_first: list[float] = []
    rsync_sync_first: list[float] = []
    # Fresh destinations every turn, nothing deleted before the end (see bench_sync).
    for turn in range(repeat):
        steps = [lambda t=turn: ours_first.append(
            run([*amlctl, "apply", "--auto-approve"], work / f"home{t}", "first amlctl"))]
        if rsync:
            steps.append(lambda t=turn: rsync_first.append(
                run([rsync, "-a", "data/", str(work / f"rsync{t}")], label="first rsync")))
            # rsync makes nothing durable, amlctl does (one syncfs): rsync followed by sync
            steps.append(lambda t=turn: rsync_sync_first.append(
                run([rsync, "-a", "data/", str(work / f"rsync-sync{t}")],
                    label="first rsync, then sync")
                + timed(lambda: subprocess.run(["sync"], check=True))))
        for step in (steps if turn % 2 == 0 else steps[::-1]):
            subprocess.run(["sync"], check=True)  # each starts with no dirty data to flush
            step()
    noop: dict[str, list[float]] = {"floor": [], "plan": [], "apply": [], "rsync": [],
                                    "plan1": []}
    for _ in range(max(7, repeat)):
        noop["floor"].append(run(floor, label="floor"))
        noop["plan1"].append(run([*amlctl, "plan"], work / "home-single", "plan, 1 file",
                                 cwd=single))
        noop["plan"].append(run([*amlctl, "plan"], work / "home0", "plan"))
        noop["apply"].append(run([*amlctl, "apply", "--auto-approve"], work / "home0", "apply"))
        if rsync:
            noop["rsync"].append(run([rsync, "-a", "data/", str(work / "rsync0")],
                                     label="rsync"))
    first_s = min(ours_first)
    med = {k: statistics.median(v) for k, v in noop.items() if v}
    print(f"  first upload: amlctl apply {first_s:.3f} s (fastest of {repeat})", end="")
    if rsync:
        rs = min(rsync_first)
        print(f", rsync -a {rs:.3f} s: ratio {first_s / rs:.2f}x   target <= 1.2x: "
              f"{'ok' if first_s <= 1.2 * rs else 'MISSED'}")
        print(f"  (second reference, not the target: rsync -a; sync "
              f"{min(rsync_sync_first):.3f} s: ratio {first_s / min(rsync_sync_first):.2f}x)")
    else:
        print()
    print(f"  no-op (median of {len(noop['floor'])}): import floor {med['floor']:.3f} s, "
          f"amlctl plan {med['plan']:.3f} s (of a 1-file upload: {med['plan1']:.3f} s), "
          f"amlctl apply {med['apply']:.3f} s", end="")
    if rsync:
        budget = med["floor"] + 1.5 * med["rsync"]
        print(f", rsync -a {med['rsync']:.3f} s")
        for name in ("plan", "apply"):
            print(f"  no-op {name}: {med[name]:.3f} s against floor + 1.5x rsync = "
                  f"{budget:.3f} s: ratio {med[name] / budget:.2f}   target <= 1.00: "
                  f"{'ok' if med[name] <= budget else 'MISSED'}")
    else:
        print()
    lowest = {k: min(v) for k, v in cpu.items() if k != "warm-up"}
    print("  CPU seconds (user + system, lowest; steadier than wall time on a busy machine): "
          + ", ".join(f"{k} {v:.3f}" for k, v in lowest.items()))
    if rsync:
        budget = lowest["floor"] + 1.5 * lowest["rsync"]
        print(f"  by CPU: first upload {lowest['first amlctl'] / lowest['first rsync']:.2f}x "
              f"rsync; no-op plan {lowest['plan'] / budget:.2f}, apply "
              f"{lowest['apply'] / budget:.2f} of floor + 1.5x rsync")
    # What grows with the tree: the no-op over this tree less the same over a 1-file tree.
    per_file = {name: (lowest[name] - lowest["plan, 1 file"]) / files * 1e6
                for name in ("plan", "apply")}
    print(f"  per file, by CPU (no-op less the 1-file plan, / {files}): plan "
          f"{per_file['plan']:.1f} us, apply {per_file['apply']:.1f} us", end="")
    if rsync:
        print(f"; rsync's whole no-op / {files}: {lowest['rsync'] / files * 1e6:.1f} us "
              "(its start-up included)")
    else:
        print()


def bench_cli_issue_tree(work: Path, repeat: int) -> None:
    """The first `amlctl apply` of the issue's own tree (2,000 small files + 3 x 8 MiB)
    against `rsync -a` (target: within 1.2x) and `rsync -a; sync`, taking turns."""
    rsync = shutil.which("rsync")
    if rsync is None:
        print("issue's tree: rsync is NOT installed, skipped")
        return
    project = work / "cli-issue"
    made = make_tree(project / "data", 2_000, 3, 8)
    (project / "amlctl.yaml").write_text(CLI_MANIFEST)
    settle(made)
    runs: dict[str, list[tuple[float, float]]] = {}  # wall, CPU seconds

    def run(label: str, argv: list[str], home: Path | None = None, then_sync: bool = False
            ) -> None:
        subprocess.run(["sync"], check=True)  # each starts with no dirty data to flush
        runs.setdefault(label, []).append(timed_process(argv, project, home, then_sync))

    for turn in range(repeat):
        steps = [
            lambda t=turn: run("amlctl apply", [sys.executable, "-m", "amlctl", "apply",
                                                "--auto-approve"], work / f"home-issue{t}"),
            lambda t=turn: run("rsync -a", [rsync, "-a", "data/", str(work / f"rs-issue{t}")]),
            lambda t=turn: run("rsync -a; sync", [rsync, "-a", "data/",
                                                  str(work / f"rss-issue{t}")], then_sync=True),
        ]
        for step in (steps if turn % 2 == 0 else steps[::-1]):
            step()
    best = {label: min(r[0] for r in rs) for label, rs in runs.items()}
    cpu = {label: min(r[1] for r in rs) for label, rs in runs.items()}
    ours, rs, rss = best["amlctl apply"], best["rsync -a"], best["rsync -a; sync"]
    print(f"whole processes, the issue's tree (2000 small files + 3 x 8 MiB), fastest of "
          f"{repeat}:")
    print(f"  first upload: amlctl apply {ours:.3f} s, rsync -a {rs:.3f} s: ratio "
          f"{ours / rs:.2f}x   target <= 1.2x: {'ok' if ours <= 1.2 * rs else 'MISSED'}")
    print(f"  (second reference, not the target: rsync -a; sync {rss:.3f} s: ratio "
          f"{ours / rss:.2f}x)")
    print("  CPU seconds (user + system, lowest): " + ", ".join(
        f"{label} {v:.3f}" for label, v in cpu.items() if label != "rsync -a; sync"))


def bench_small(work: Path, turns: int = 9) -> None:
    """The quickstart's upload (2 files) into a new store, durably (see module doc, 5)."""
    src = ROOT / "examples" / "mnist" / "data"
    times = []
    for turn in range(turns):
        case = work / f"small{turn}"
        start = time.perf_counter()
        with FolderFileStore(case / "dst", case / "index.db") as store, \
                HashCache(case / "cache.db") as cache:
            plan = plan_sync(src, store.list_files(), cache=cache)
            apply_sync(plan, src, store, cache=cache)
        times.append(time.perf_counter() - start)
    print(f"small upload ({len(plan.add)} files, the quickstart's): median "
          f"{statistics.median(times):.3f} s of {turns}   target < 0.1 s: "
          f"{'ok' if statistics.median(times) < 0.1 else 'MISSED'}")


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
