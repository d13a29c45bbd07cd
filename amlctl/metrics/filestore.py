"""MLflow's file tracking store, written and read without MLflow.

Azure ML sets `MLFLOW_TRACKING_URI` and `MLFLOW_RUN_ID` in every process of a job, so
`mlflow.log_metric` from any role lands in the one run. The local backend does the same with
a file store of the run's own, under its folder:

    <run folder>/mlruns/<experiment id>/meta.yaml
    <run folder>/mlruns/<experiment id>/<run id>/meta.yaml
    <run folder>/mlruns/<experiment id>/<run id>/metrics/<key>   lines "timestamp value step"

The experiment and run are made here, before any task starts (so tasks that start together do
not race to create them), and read back here; the tasks only need `mlflow` (or
`mlflow-skinny`) if they log. A metric key may hold `/`: it is then a nested file.

MLflow 3 refuses a file store unless `MLFLOW_ALLOW_FILE_STORE=true`, which `task_env` sets.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import stat
import time
from pathlib import Path
from typing import NamedTuple

STORE_DIR = "mlruns"
EXPERIMENT_ID = "1"  # one experiment per store: the run's own
# Bounds for reading a store a run wrote (a run is not trusted to keep its files small).
MAX_METRIC_KEYS = 1000
MAX_POINTS_PER_KEY = 100_000
_MAX_DEPTH = 8
_MLFLOW_RUN_ID = re.compile(r"[a-zA-Z0-9][\w\-]{0,255}", re.ASCII)  # what MLflow accepts


class Point(NamedTuple):
    """One logged value (a tuple: a long series is read fast)."""

    step: int
    value: float
    timestamp_ms: int


def store_dir(run_dir: Path) -> Path:
    """The run's tracking store folder."""
    return run_dir / STORE_DIR


def tracking_uri(run_dir: Path) -> str:
    """`file://` URI of the run's tracking store."""
    return store_dir(run_dir).resolve().as_uri()


def _yaml(fields: dict[str, object]) -> str:
    # JSON scalars are YAML scalars: no YAML library needed to write MLflow's meta.yaml.
    return "".join(f"{key}: {json.dumps(value)}\n" for key, value in fields.items())


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def mlflow_run_id(run_id: str) -> str:
    """The run's id in MLflow: the run id itself, as on Azure ML, unless MLflow would refuse
    it (a very long experiment name); then a digest of it."""
    if _MLFLOW_RUN_ID.fullmatch(run_id):
        return run_id
    return hashlib.sha256(run_id.encode()).hexdigest()[:32]


def create_run(run_dir: Path, run_id: str, experiment: str, run_name: str) -> Path:
    """Lay out the store, its experiment and the run (idempotent); return the run's folder."""
    run_id = mlflow_run_id(run_id)
    root = store_dir(run_dir)
    exp_dir = root / EXPERIMENT_ID
    folder = exp_dir / run_id
    if (folder / "meta.yaml").is_file():
        return folder
    now = int(time.time() * 1000)
    for sub in ("metrics", "params", "tags", "artifacts"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    (root / ".trash").mkdir(exist_ok=True)
    (exp_dir / "tags").mkdir(exist_ok=True)
    _write(exp_dir / "meta.yaml", _yaml({
        "artifact_location": exp_dir.resolve().as_uri(), "creation_time": now,
        "experiment_id": EXPERIMENT_ID, "last_update_time": now,
        "lifecycle_stage": "active", "name": experiment}))
    _write(folder / "tags" / "mlflow.runName", run_name)
    _write(folder / "meta.yaml", _yaml({
        "artifact_uri": (folder / "artifacts").resolve().as_uri(), "end_time": None,
        "entry_point_name": "", "experiment_id": EXPERIMENT_ID,
        "lifecycle_stage": "active", "run_id": run_id, "run_name": run_name,
        "source_name": "", "source_type": 4, "source_version": "", "start_time": now,
        "status": 1, "tags": [], "user_id": "amlctl"}))
    return folder


def task_env(run_dir: Path, run_id: str) -> dict[str, str]:
    """The variables that point MLflow in a task at the run (as Azure ML sets them)."""
    return {
        "MLFLOW_TRACKING_URI": tracking_uri(run_dir),
        "MLFLOW_RUN_ID": mlflow_run_id(run_id),
        "MLFLOW_EXPERIMENT_ID": EXPERIMENT_ID,
        "MLFLOW_ALLOW_FILE_STORE": "true",
    }


def _run_folder(root: Path, run_id: str) -> Path | None:
    run_id = mlflow_run_id(run_id)
    preferred = root / EXPERIMENT_ID / run_id
    if preferred.is_dir() and not preferred.is_symlink():
        return preferred
    if not root.is_dir() or root.is_symlink():
        return None
    for exp_dir in sorted(root.iterdir()):  # a store made by MLflow itself
        candidate = exp_dir / run_id
        if candidate.is_dir() and not candidate.is_symlink() and not exp_dir.is_symlink():
            return candidate
    return None


def read_metrics(root: Path, run_id: str) -> dict[str, list[Point]]:
    """Every metric of the run by key, points in step order (then time); {} when the store
    or the run does not exist. Malformed lines are skipped; links are not followed."""
    return StoreReader().read(root, run_id)


class StoreReader:
    """Reads a run's metrics again and again (a live view): each read parses only what was
    appended to each metric file since the previous one."""

    def __init__(self) -> None:
        self._tails: dict[str, _Tail] = {}

    def read(self, root: Path, run_id: str) -> dict[str, list[Point]]:
        """As `read_metrics`."""
        folder = _run_folder(root, run_id)
        if folder is None:
            return {}
        found: dict[str, list[Point]] = {}
        for path, key in _metric_files(folder / "metrics", "", 0)[:MAX_METRIC_KEYS]:
            tail = self._tails.setdefault(str(path), _Tail())
            points = tail.read(path)
            if points:
                found[key] = points
        return dict(sorted(found.items()))


def _metric_files(folder: Path, prefix: str, depth: int) -> list[tuple[Path, str]]:
    if depth > _MAX_DEPTH:
        return []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:
        return []
    files = []
    for entry in entries:
        if entry.name.endswith(".tmp"):
            continue
        key = prefix + entry.name
        if entry.is_file(follow_symlinks=False):
            files.append((Path(entry.path), key))
        elif entry.is_dir(follow_symlinks=False):
            files.extend(_metric_files(Path(entry.path), key + "/", depth + 1))
    return files


class _Tail:
    """The points of one metric file, read up to `offset` (the end of its last whole line)."""

    def __init__(self) -> None:
        self.inode = -1
        self.offset = 0
        self.points: list[Point] = []

    def read(self, path: Path) -> list[Point]:
        try:  # no link, no FIFO: a run could plant either where its metrics go
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
        except OSError:
            return []
        with os.fdopen(fd, "rb") as stream:
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                return []
            if info.st_ino != self.inode or info.st_size < self.offset:  # replaced, truncated
                self.inode, self.offset, self.points = info.st_ino, 0, []
            if info.st_size == self.offset or len(self.points) >= MAX_POINTS_PER_KEY:
                return self.points
            stream.seek(self.offset)
            data = stream.read(info.st_size - self.offset)
        whole = data.rfind(b"\n") + 1  # a last line still being written waits for next time
        self.offset += whole
        added = _parse(data[:whole].decode(errors="replace"),
                       MAX_POINTS_PER_KEY - len(self.points))
        if added:
            in_order = all(_order(a) <= _order(b) for a, b in itertools.pairwise(added))
            after = not self.points or _order(self.points[-1]) <= _order(added[0])
            self.points.extend(added)
            if not (in_order and after):  # most runs log steps in order: no sort needed
                self.points.sort(key=_order)
        return self.points


def _order(point: Point) -> tuple[int, int]:
    return point.step, point.timestamp_ms


def _parse(text: str, limit: int) -> list[Point]:
    points = []
    for line in text.splitlines():
        if len(points) >= limit:
            break
        parts = line.split()
        try:
            if len(parts) == 3:
                points.append(Point(int(parts[2]), float(parts[1]), int(parts[0])))
            elif len(parts) == 2:  # old MLflow versions wrote no step
                points.append(Point(0, float(parts[1]), int(parts[0])))
        except ValueError:
            continue  # a malformed line is skipped
    return points
