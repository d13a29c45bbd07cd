"""Startup benchmark: how long amlctl takes before and while it reads a manifest.

    python bench/startup.py [--runs N] [--strict]

Median wall time of N runs (15 by default) of each command, interleaved so that load on the
machine affects them alike, each printed as a ratio to the floor any tool on this stack pays:
a Python that imports typer, pydantic, ruamel.yaml and jinja2 and does nothing else. CPU time
(user + system) is printed beside it: on a busy machine it is the steadier figure.
Target: `validate` of the quickstart manifest within 1.5x that floor. --strict exits 1 when a
target is missed (for CI); without it the figures are only printed.

Also printed, without a target: a no-op `plan` of a manifest with a one-file local upload
(applied once first, in a temporary folder that also holds its state). It is the fixed part
of every plan and apply: what a re-sync pays whatever the size of the tree.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "examples" / "mnist" / "amlctl.yaml"
FLOOR = "floor (import typer, pydantic, ruamel.yaml, jinja2)"
# References, for reading the figures: `import pydantic` is lazy and loads almost nothing, so
# the floor does not pay for what any tool that validates with pydantic loads (BaseModel, and
# importlib.metadata when the first validator looks for plugins); and typer 0.29 builds a
# pydantic TypeAdapter per option, so a command with one option pays that too.
PYDANTIC_FLOOR = (
    "import typer, ruamel.yaml, jinja2\n"
    "from pydantic import BaseModel\n"
    "class M(BaseModel):\n"
    "    x: int\n"
)
TYPER_FLOOR = (
    "import sys, typer, ruamel.yaml, jinja2\n"
    "app = typer.Typer()\n"
    "@app.command()\n"
    "def run(file: str = 'amlctl.yaml') -> None:\n"
    "    pass\n"
    "app(['--file', 'x'], standalone_mode=False)\n"
)
TARGETS = {"amlctl validate -f examples/mnist/amlctl.yaml": 1.5}
PLAN = "amlctl plan (no-op; a 1-file local upload)"
ONE_FILE_MANIFEST = """\
version: 1
name: startup
workspace:
  name: startup-ws
  subscription_id: "00000000-0000-0000-0000-000000000000"
  resource_group: startup-rg
  location: westeurope
uploads:
  data: {datastore: default, src_dir: data, target_path: data}
"""


def amlctl_command() -> list[str]:
    """The installed console script beside this Python, else `python -m amlctl`."""
    script = Path(sys.executable).with_name("amlctl")
    return [str(script)] if script.exists() else [sys.executable, "-m", "amlctl"]


def commands(project: Path) -> dict[str, list[str]]:
    amlctl = amlctl_command()
    return {
        FLOOR: [sys.executable, "-c", "import typer, pydantic, ruamel.yaml, jinja2"],
        "reference: the floor and one pydantic model": [sys.executable, "-c", PYDANTIC_FLOOR],
        "reference: the floor and a one-option typer command": [
            sys.executable, "-c", TYPER_FLOOR,
        ],
        "amlctl --help": [*amlctl, "--help"],
        "amlctl validate -f examples/mnist/amlctl.yaml": [*amlctl, "validate", "-f", str(MANIFEST)],
        "amlctl render -f examples/mnist/amlctl.yaml": [*amlctl, "render", "-f", str(MANIFEST)],
        PLAN: [*amlctl, "plan", "-f", str(project / "amlctl.yaml")],
    }


def one_file_project(work: Path, env: dict[str, str]) -> Path:
    """A manifest uploading a folder of one file, applied once: its plan has nothing to do."""
    project = work / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "one.txt").write_text("1\n")
    (project / "amlctl.yaml").write_text(ONE_FILE_MANIFEST)
    done = subprocess.run([*amlctl_command(), "apply", "--auto-approve", "-f",
                           str(project / "amlctl.yaml")], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise SystemExit(f"apply of the one-file project failed:\n{done.stderr}")
    return project


def time_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU (user + system) seconds of one run of `argv`."""
    started = time.perf_counter()
    child = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert child.stderr is not None
    errors = child.stderr.read()
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{errors.decode()}")
    return elapsed, usage.ru_utime + usage.ru_stime


def measure(runs: int, work: Path) -> dict[str, tuple[float, float]]:
    """Median wall and CPU seconds per command, after one warm-up round (no cold caches).

    Runs are interleaved, so a burst of load on the machine hits every command alike.
    """
    # As installed: no AMLCTL_* setting, and bytecode cached (the warm-up round writes it).
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("AMLCTL_") and k != "PYTHONDONTWRITEBYTECODE"}
    # This checkout's amlctl, whichever one the venv's console script was installed from.
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    todo = commands(one_file_project(work, env))
    for argv in todo.values():
        time_once(argv, env)
    walls: dict[str, list[float]] = {name: [] for name in todo}
    cpus: dict[str, list[float]] = {name: [] for name in todo}
    for _ in range(runs):
        for name, argv in todo.items():
            wall, cpu = time_once(argv, env)
            walls[name].append(wall)
            cpus[name].append(cpu)
    return {
        name: (statistics.median(walls[name]), statistics.median(cpus[name])) for name in todo
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs of each command (15)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="amlctl-startup-") as work:
        medians = measure(args.runs, Path(work))
    floor_wall, floor_cpu = medians[FLOOR]
    missed = []
    print(f"startup, median of {args.runs} runs each; ratio to the floor (wall, and CPU):")
    for name, (wall, cpu) in medians.items():
        ratio = wall / floor_wall
        target = TARGETS.get(name)
        verdict = ""
        if target is not None:
            verdict = f"  target <= {target}x: {'ok' if ratio <= target else 'MISSED'}"
            if ratio > target:
                missed.append(name)
        print(f"  {name:<52} {wall * 1000:6.0f} ms {ratio:5.2f}x   "
              f"cpu {cpu * 1000:4.0f} ms {cpu / floor_cpu:5.2f}x{verdict}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
