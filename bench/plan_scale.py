"""Plan scale benchmark: how plan and apply time grow with the number of resources.

    python bench/plan_scale.py [--sizes 10,100,1000] [--repeat 3]

For each size N it writes, in a temp folder, a manifest of N resources (computes, datastores,
experiments, and uploads of small source folders) on the local backend, then runs the real
`amlctl` commands in this process (the interpreter's start-up is not counted):
1. `plan` from an empty workspace (a create plan; median of --repeat runs);
2. `apply --auto-approve` (once);
3. `plan` again, now a no-op plan (median of --repeat runs).
It prints wall and CPU seconds, the no-op plan's parts (manifest loading, engine, view), the
1000/100 ratio of each (linear growth is 10; target <= 12) and whether a 1,000-resource plan
takes about a second (target: <= 1.5 s of CPU). Exit status 1 when a plan target is missed.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from amlctl.cli import main

TARGET_RATIO = 12.0
TARGET_PLAN_SECONDS = 1.5  # "about a second" for 1,000 resources
FILES_PER_UPLOAD = 3


def write_stack(folder: Path, n: int) -> Path:
    """A manifest of `n` resources: 40% computes, 20% datastores, 30% experiments, 10% uploads."""
    computes, datastores, uploads = n * 4 // 10, n * 2 // 10, n // 10
    experiments = n - computes - datastores - uploads
    lines = [
        "version: 1",
        f"name: scale{n}",
        "workspace:",
        f"  name: scale-{n}",
        '  subscription_id: "00000000-0000-0000-0000-000000000000"',
        "  resource_group: bench-rg",
        "  location: westeurope",
        "computes:",
    ]
    for i in range(computes):
        lines += [f"  c{i}:", "    vm_size: Standard_D2_v3", f"    max_nodes: {1 + i % 8}",
                  "    idle_seconds_before_scaledown: 600", "    tags: {team: bench}"]
    lines.append("datastores:")
    for i in range(datastores):
        lines += [f"  d{i}:", "    type: azure_blob", "    account_name: benchacct",
                  f"    container_name: c{i}"]
    lines.append("uploads:")
    for i in range(uploads):
        src = folder / "data" / f"u{i}"
        src.mkdir(parents=True)
        for j in range(FILES_PER_UPLOAD):
            (src / f"part-{j}.csv").write_text(f"{i},{j}\n" * 20)
        store = f"d{i % datastores}" if datastores else "default"
        lines += [f"  u{i}:", f"    datastore: {store}", f"    src_dir: data/u{i}",
                  f"    target_path: u{i}"]
    lines.append("experiments:")
    lines += [f"  e{i}: {{}}" for i in range(experiments)]
    path = folder / "amlctl.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def amlctl(*args: str) -> str:
    """Run an amlctl command in this process; its stdout. Fails on a non-zero exit."""
    out, err = io.StringIO(), io.StringIO()
    code: object = 0
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(args))
        except SystemExit as done:
            code = done.code
    if code not in (0, None):
        raise RuntimeError(f"amlctl {' '.join(args)} exited {code}:\n{err.getvalue()}")
    return out.getvalue()


def timed(action: Callable[[], object], repeat: int = 1) -> tuple[float, float]:
    """Median wall and CPU seconds of `repeat` calls (CPU: this process, all its threads;
    steadier than wall time on a busy machine)."""
    wall, cpu = [], []
    for _ in range(repeat):
        started, started_cpu = time.perf_counter(), time.process_time()
        action()
        wall.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
    return statistics.median(wall), statistics.median(cpu)


def measure(n: int, repeat: int, root: Path) -> dict[str, tuple[float, float]]:
    """(wall, CPU) seconds of a create plan, an apply and a no-op plan of an `n`-resource
    stack, and of the no-op plan's parts: loading the manifest, planning, rendering."""
    folder = root / f"n{n}"
    folder.mkdir()
    manifest = write_stack(folder, n)
    plan_args = ("--no-color", "plan", "-f", str(manifest))
    create_plan = timed(lambda: amlctl(*plan_args), repeat)
    assert f"Plan: {n + 1} to add" in amlctl(*plan_args)
    apply = timed(lambda: amlctl("apply", "--auto-approve", "-f", str(manifest)))
    noop_plan = timed(lambda: amlctl(*plan_args), repeat)
    assert "No changes." in amlctl(*plan_args)
    return {"create plan": create_plan, "apply": apply, "no-op plan": noop_plan,
            **plan_parts(manifest, repeat)}


def plan_parts(manifest: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """The no-op plan taken apart: manifest (YAML, templates, validation), engine, view."""
    from amlctl.engine.planner import make_plan, open_context
    from amlctl.manifest.loader import load_manifest
    from amlctl.render.human import render_plan

    loaded = load_manifest(manifest)
    context = open_context(loaded)
    try:
        plan = make_plan(context)
        return {
            "  manifest": timed(lambda: load_manifest(manifest), repeat),
            "  engine": timed(lambda: make_plan(context), repeat),
            "  view": timed(lambda: render_plan(plan), repeat),
        }
    finally:
        context.close()


def main_bench() -> int:
    """Measure every size, print the table and the ratios; exit 1 if a target is missed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000")
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    sizes = [int(s) for s in options.sizes.split(",")]
    for name in list(os.environ):
        if name.startswith("AMLCTL_"):
            del os.environ[name]
    amlctl("--version")  # import the CLI before timing anything
    results: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="amlctl-bench-") as tmp:
        for n in sizes:
            results[n] = measure(n, options.repeat, Path(tmp))
    print("seconds, wall / CPU (the CPU figure is steadier on a busy machine)")
    print(f"{'':>13}" + "".join(f"{n:>18}" for n in results))
    for step in next(iter(results.values())):
        print(f"{step:<13}" + "".join(f"{row[step][0]:>9.3f}/{row[step][1]:<8.3f}"
                                      for row in results.values()))
    ok = True
    if 100 in results and 1000 in results:
        print()
        for step in ("create plan", "apply", "no-op plan"):
            wall, cpu = (results[1000][step][i] / results[100][step][i] for i in (0, 1))
            print(f"ratio 1000/100, {step}: {wall:.1f} wall, {cpu:.1f} CPU "
                  f"(target <= {TARGET_RATIO:g})")
            if step != "apply":
                ok = ok and cpu <= TARGET_RATIO
        for step in ("create plan", "no-op plan"):
            wall, cpu = results[1000][step]
            verdict = "ok" if cpu <= TARGET_PLAN_SECONDS else "too slow"
            ok = ok and cpu <= TARGET_PLAN_SECONDS
            print(f"1,000 resources, {step}: {wall:.2f} s wall, {cpu:.2f} s CPU "
                  f"(target about 1 s: {verdict})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main_bench())
