"""Template budget benchmark: each hostile template fails fast and in bounded memory.

    python bench/template_budget.py [--runs N] [--strict]

Each hostile template of tests/manifest/hostile.py is validated by `amlctl validate` in a
process of its own; wall time and peak memory (medians of N runs, 3 by default) are printed
beside the baseline, the same manifest with a trivial template, measured in the same run.
Targets: each hostile case within 1 s more than the baseline and 1.5x its peak memory.
--strict exits 1 when one is missed.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.manifest.hostile import HOSTILE  # noqa: E402

MANIFEST = """\
version: 1
name: demo
workspace:
  name: demo-ws
  subscription_id: "0"
  resource_group: rg
  location: "{template}"
"""
BASELINE = ("baseline: a trivial template", "{{ 'westeurope' }}", "")
EXTRA_SECONDS = 1.0
MEMORY_RATIO = 1.5


def run_once(folder: Path, template: str) -> tuple[float, int, int]:
    """Wall seconds, peak RSS in KiB and exit code of one validate."""
    (folder / "amlctl.yaml").write_text(MANIFEST.format(template=template))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    child = subprocess.Popen([sys.executable, "-m", "amlctl", "validate"], cwd=folder, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    return time.perf_counter() - started, usage.ru_maxrss, os.waitstatus_to_exitcode(status)


def median_run(folder: Path, template: str, runs: int) -> tuple[float, int, int]:
    """Median wall seconds and peak RSS of `runs` validates; the exit code of the last."""
    results = [run_once(folder, template) for _ in range(runs)]
    walls = sorted(r[0] for r in results)
    peaks = sorted(r[1] for r in results)
    return walls[len(walls) // 2], peaks[len(peaks) // 2], results[-1][2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs of each case (3)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    missed = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        run_once(folder, BASELINE[1])  # warm-up: bytecode caches
        base_wall, base_rss, code = median_run(folder, BASELINE[1], args.runs)
        assert code == 0, "the baseline manifest must validate"
        print(f"{'case':36} {'wall s':>7} {'+ base':>7} {'peak MiB':>9} {'x base':>7}  exit")
        print(f"{BASELINE[0]:36} {base_wall:7.2f} {0:7.2f} {base_rss / 1024:9.1f} {1:7.2f}  0")
        for case, template, _ in HOSTILE:
            wall, rss, code = median_run(folder, template, args.runs)
            extra, ratio = wall - base_wall, rss / base_rss
            ok = extra <= EXTRA_SECONDS and ratio <= MEMORY_RATIO and code == 1
            if not ok:
                missed.append(case)
            print(f"{case[:36]:36} {wall:7.2f} {extra:7.2f} {rss / 1024:9.1f} {ratio:7.2f}  "
                  f"{code}{'' if ok else '  MISSED'}")
    print(f"targets: each within {EXTRA_SECONDS:g} s of the baseline and {MEMORY_RATIO:g}x its "
          f"peak memory, exit 1: {len(HOSTILE) - len(missed)}/{len(HOSTILE)} ok")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
