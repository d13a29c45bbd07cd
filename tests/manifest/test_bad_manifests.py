"""The corpus of bad manifests: each fails validation with exactly the lines it expects.

`bad/NAME.yaml` is copied into a folder holding `src/train.py` and `data/`, validated there as
`amlctl validate -f NAME.yaml`, and everything printed must equal `bad/NAME.expected`, where
`{file}` stands for the manifest path. Nothing may be printed on stdout, nothing written.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amlctl.manifest.loader import MAX_FILE_BYTES

BAD = Path(__file__).parent / "bad"
CASES = sorted(p.stem for p in BAD.glob("*.yaml"))
SECONDS_PER_CASE = 10.0  # generous for a loaded machine; each takes well under a second


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file and folder under `folder` with its size and modification time."""
    return {
        str(path.relative_to(folder)): (path.stat().st_size, path.stat().st_mtime_ns)
        for path in sorted(folder.rglob("*"))
    }


def test_corpus_is_complete() -> None:
    assert len(CASES) >= 35
    manifests = {p.stem for p in BAD.glob("*.yaml")}
    expected = {p.stem for p in BAD.glob("*.expected")}
    assert not manifests - expected, f"no .expected file: {sorted(manifests - expected)}"
    assert not expected - manifests, f"no manifest: {sorted(expected - manifests)}"


@pytest.mark.parametrize("case", CASES)
def test_bad_manifest(case: str, project: Path, amlctl) -> None:
    manifest = f"{case}.yaml"
    shutil.copy(BAD / manifest, project / manifest)
    before = snapshot(project)

    started = time.perf_counter()
    result = amlctl("validate", "-f", manifest)
    elapsed = time.perf_counter() - started

    expected = (BAD / f"{case}.expected").read_text().replace("{file}", manifest)
    assert result.stderr == expected
    assert result.code == 1
    assert result.stdout == ""
    assert snapshot(project) == before, "validate must not write anything"
    assert elapsed < SECONDS_PER_CASE


def test_every_error_line_names_its_place() -> None:
    # FILE:LINE:COL: path: message, except problems of the whole file (size, deep nesting)
    for case in CASES:
        lines = (BAD / f"{case}.expected").read_text().splitlines()
        assert lines[-1].endswith("in the manifest"), case
        for line in lines[:-1]:
            assert line.startswith("{file}:"), (case, line)


def test_oversized_file_is_refused_unread(project: Path, amlctl) -> None:
    filler = "# " + "x" * 97 + "\n"
    text = "version: 1\nname: demo\n" + filler * (MAX_FILE_BYTES // len(filler) + 1)
    (project / "big.yaml").write_text(text)
    size = len(text.encode())
    assert size > MAX_FILE_BYTES

    result = amlctl("validate", "-f", "big.yaml")

    assert result.code == 1
    assert result.stderr == (
        f"big.yaml: file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes for a manifest\n"
        "1 error in the manifest\n"
    )


def test_alias_bomb_is_bounded_in_time_and_memory(project: Path) -> None:
    # A process of its own, so its peak memory is the bomb's and nothing else's.
    shutil.copy(BAD / "alias_bomb.yaml", project / "amlctl.yaml")
    # VmHWM is the peak of this process's own memory since exec; ru_maxrss would also count
    # the parent's (pytest's) peak, which Linux carries over a fork and exec.
    probe = (
        "import atexit, re, resource, sys\n"
        "def peak():\n"
        "    try:\n"
        "        status = open('/proc/self/status').read()\n"
        "        return int(re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
        "    except (OSError, AttributeError):\n"
        "        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "atexit.register(lambda: print('maxrss', peak(), file=sys.stderr))\n"
        "from amlctl.cli import main\n"
        "main(['validate'])\n"
    )
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", probe], cwd=project, capture_output=True, text=True, timeout=60
    )
    elapsed = time.perf_counter() - started

    assert run.returncode == 1
    assert "alias bomb" in run.stderr
    peak_kib = int(run.stderr.rsplit("maxrss", 1)[1])
    assert peak_kib < 256 * 1024, f"peak memory {peak_kib} KiB"
    assert elapsed < 10, f"took {elapsed:.1f}s"


def test_deep_flow_nesting_fails_fast(project: Path, amlctl) -> None:
    # The YAML scanner's work grows with the square of the flow depth: refused early.
    (project / "deep.yaml").write_text("version: 1\nvars: " + "[" * 5000 + "]" * 5000 + "\n")
    started = time.perf_counter()
    result = amlctl("validate", "-f", "deep.yaml")
    assert time.perf_counter() - started < 5
    assert result.code == 1
    assert result.stderr == (
        "deep.yaml:2:71: YAML syntax error: collections nest deeper than 64 levels\n"
        "1 error in the manifest\n"
    )


def test_block_nesting_past_the_parser_stack_is_an_error(project: Path, amlctl) -> None:
    lines = ["version: 1", "vars:"] + [" " * (level + 1) + f"k{level}:" for level in range(600)]
    (project / "deep.yaml").write_text("\n".join(lines) + "\n")
    result = amlctl("validate", "-f", "deep.yaml")
    assert result.code == 1
    assert result.stderr == "deep.yaml: YAML nests deeper than 64 levels\n1 error in the manifest\n"


def test_sandbox_escape_is_never_executed(project: Path, amlctl) -> None:
    # Were the template run, it would create this file.
    marker = project / "escaped"
    template = (
        "{{ cycler.__init__.__globals__.os.system('touch escaped') }}"
        "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    )
    (project / "amlctl.yaml").write_text(
        "version: 1\nname: demo\nworkspace:\n  name: demo-ws\n"
        f"  subscription_id: \"{template}\"\n  resource_group: rg\n  location: westeurope\n"
    )
    result = amlctl("validate")
    assert result.code == 1
    assert "refused by the sandbox" in result.stderr
    assert not marker.exists()
