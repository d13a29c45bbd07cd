"""Metric store benchmark: what `watch` pays to re-read a long run's metrics every second.

    python bench/metrics.py [--keys K] [--points N] [--repeat R]

In a temp folder it lays out a run's MLflow file store with K metrics of N points each
(written as MLflow writes them: "timestamp value step" lines), then, R times:
1. baseline: a full read of the store (what `amlctl metrics` does once);
2. a live re-read after one point was appended to one metric (what `watch` does each tick,
   with the reader it keeps between reads).
It prints the medians, microseconds per point of the full read, and the ratio of the
re-read to the full read (target: at most 1/20, so watching a long run stays cheap).
"""

from __future__ import annotations

import argparse
import math
import statistics
import tempfile
import time
from pathlib import Path

from amlctl.metrics import filestore

TARGET_RATIO = 1 / 20
RUN_ID = "bench_1700000000_00000000"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--points", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        folder = filestore.create_run(run_dir, RUN_ID, "bench", "bench")
        for key in range(args.keys):
            lines = "".join(f"{1_700_000_000_000 + i} {math.sin(i / 50)} {i}\n"
                            for i in range(args.points))
            (folder / "metrics" / f"m{key}").write_text(lines)
        root = filestore.store_dir(run_dir)
        full, live = [], []
        reader = filestore.StoreReader()
        reader.read(root, RUN_ID)
        for n in range(args.repeat):
            started = time.perf_counter()
            read = filestore.read_metrics(root, RUN_ID)
            full.append(time.perf_counter() - started)
            assert sum(map(len, read.values())) == args.keys * args.points + n
            with (folder / "metrics" / "m0").open("a") as stream:
                stream.write(f"{1_800_000_000_000 + n} 0.5 {args.points + n}\n")
            started = time.perf_counter()
            read = reader.read(root, RUN_ID)
            live.append(time.perf_counter() - started)
            assert sum(map(len, read.values())) == args.keys * args.points + n + 1
    points = args.keys * args.points
    full_s, live_s = statistics.median(full), statistics.median(live)
    ratio = live_s / full_s
    print(f"metric store, {args.keys} metrics x {args.points} points ({points} points):")
    print(f"  full read (baseline):        {full_s * 1000:8.1f} ms "
          f"({full_s / points * 1e6:.2f} us a point)")
    print(f"  live re-read, 1 new point:   {live_s * 1000:8.1f} ms")
    print(f"  ratio live/full: {ratio:.3f} (target <= {TARGET_RATIO:.3f}) "
          f"{'OK' if ratio <= TARGET_RATIO else 'MISSED'}")


if __name__ == "__main__":
    main()
