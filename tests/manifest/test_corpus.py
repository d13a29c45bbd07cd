"""The generated corpus: over a thousand mutated manifests and var files through the real CLI.

Every case must end with exit 0 or 1 (2 for a plan with changes) within a time bound, print no
traceback, write nothing outside its project folder (an audit hook watches every write,
delete, rename, link and database open), and print no secret. Cases run in this process
through `amlctl.cli.main` for speed; a sample runs in subprocesses, as a user would.
`AMLCTL_CORPUS_SEED` picks other cases (the default keeps CI reproducible).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from amlctl.cli import main
from tests.manifest.corpus import CANARY, SECRET_NAMES, Case, generate, make_project

SEED = int(os.environ.get("AMLCTL_CORPUS_SEED", "20261129"))
COUNT = 1000
SECONDS_PER_CASE = 10.0  # a hang detector; a case takes milliseconds
SUBPROCESS_SAMPLE = 8

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_WRITING_EVENTS = {
    "os.mkdir": (0,), "os.remove": (0,), "os.rmdir": (0,), "os.rename": (0, 1),
    "os.symlink": (1,), "os.link": (1,), "os.truncate": (0,), "os.chmod": (0,),
    "os.chown": (0,), "os.utime": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,),
    "shutil.move": (1,), "sqlite3.connect": (0,), "tempfile.mkstemp": (0,),
    "tempfile.mkdtemp": (0,),
}


class Watch:
    """An audit hook recording writes outside `root` while on (hooks cannot be removed)."""

    def __init__(self) -> None:
        self.root: str | None = None
        self.outside: list[str] = []
        sys.addaudithook(self.hook)

    def hook(self, event: str, args: tuple) -> None:
        if self.root is None:
            return
        if event == "open":
            path, mode, flags = (*args, None, None)[:3]
            writing = (isinstance(flags, int) and flags & _WRITE_FLAGS) or (
                isinstance(mode, str) and any(c in mode for c in "wax+"))
            if writing:
                self.check(event, path)
        elif event in _WRITING_EVENTS:
            for index in _WRITING_EVENTS[event]:
                if index < len(args):
                    self.check(event, args[index])

    def check(self, event: str, path: object) -> None:
        if isinstance(path, int) or path is None:
            return
        name = os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else str(path)
        if name in (":memory:", ""):
            return
        real = os.path.realpath(name)
        if real != self.root and not real.startswith(self.root + os.sep):
            self.outside.append(f"{event} {name}")


WATCH = Watch()


class CaseTimeout(Exception):
    """A case ran past SECONDS_PER_CASE."""


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise CaseTimeout(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def write_case(home: Path, case: Case) -> list[str]:
    """Write the case's files into `home`; the command line that reads them."""
    manifest = home / f"case{case.index}.yaml"
    manifest.write_bytes(case.manifest)
    args = list(case.command)
    if case.var_file is not None:
        var_file = home / f"case{case.index}.vars.yaml"
        var_file.write_bytes(case.var_file)
        args = ["--var-file", var_file.name, *args]
    return [*args, "-f", manifest.name]


def allowed_codes(case: Case) -> set[int]:
    return {0, 1, 2} if "plan" in case.command else {0, 1}


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The project folder of the corpus, as the current folder, with secrets set."""
    folder = make_project(tmp_path)
    monkeypatch.chdir(folder)
    monkeypatch.setenv("HOME", str(tmp_path))
    for name in SECRET_NAMES:
        monkeypatch.setenv(name, CANARY)
    return folder


def test_generated_corpus(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cases = generate(SEED, COUNT)
    root = os.path.realpath(home.parent.parent)
    failures: list[str] = []
    codes: dict[int, int] = {}
    slowest = 0.0
    for case in cases:
        args = write_case(home, case)
        capsys.readouterr()
        WATCH.outside.clear()
        WATCH.root = root
        started = time.perf_counter()
        crashed = ""
        code = 0
        try:
            with time_limit(SECONDS_PER_CASE):
                main(args)
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        except (Exception, CaseTimeout) as err:  # a crash or a hang: the bug this finds
            crashed = f"{type(err).__name__}: {err}"
        finally:
            WATCH.root = None
        elapsed = time.perf_counter() - started
        slowest = max(slowest, elapsed)
        out = capsys.readouterr()
        text = out.out + out.err
        codes[code] = codes.get(code, 0) + 1
        problems = []
        if crashed:
            problems.append(crashed)
        elif code not in allowed_codes(case):
            problems.append(f"exit {code}")
        if "Traceback" in text:
            problems.append("a traceback")
        if CANARY in text:
            problems.append("the secret printed")
        if WATCH.outside:
            problems.append(f"wrote outside: {WATCH.outside[:3]}")
        if problems:
            failures.append(f"{case.describe()} [{' '.join(args)}]: {'; '.join(problems)}"
                            f"\n    {text.strip()[-300:]!r}")
    with capsys.disabled():
        print(f"\ngenerated corpus: {len(cases)} cases (seed {SEED}), exit codes {codes}, "
              f"slowest {slowest:.2f} s")
    assert len(cases) >= 1000
    assert not failures, f"{len(failures)} failing cases:\n" + "\n".join(failures[:20])
    assert codes.get(1, 0) > len(cases) // 2, "most mutations must be caught as errors"


def test_generated_corpus_sample_in_subprocesses(home: Path) -> None:
    # The same kind of cases as a user runs them: a process of their own, real stdio.
    cases = generate(SEED + 1, SUBPROCESS_SAMPLE)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    for case in cases:
        args = write_case(home, case)
        run = subprocess.run([sys.executable, "-m", "amlctl", *args], cwd=home, env=env,
                             capture_output=True, text=True, timeout=60)
        text = run.stdout + run.stderr
        assert run.returncode in allowed_codes(case), (case.describe(), text)
        assert "Traceback" not in text, (case.describe(), text)
        assert CANARY not in text, case.describe()
    print(f"\ngenerated corpus: {len(cases)} cases in subprocesses")


def test_the_mutator_is_deterministic() -> None:
    cases = generate(7, 50)
    assert cases == generate(7, 50)
    assert cases != generate(8, 50)


def test_the_watch_sees_writes_outside_the_project(tmp_path: Path) -> None:
    inside, outside = tmp_path / "project", tmp_path / "elsewhere"
    inside.mkdir()
    outside.mkdir()
    (inside / "link").symlink_to(outside)
    WATCH.outside.clear()
    WATCH.root = os.path.realpath(inside)
    try:
        (inside / "fine.txt").write_text("x")
        (inside / "fine.txt").read_text()
        (inside / "link" / "escaped.txt").write_text("x")  # through a link: still outside
        os.mkdir(outside / "made")
        os.rename(inside / "fine.txt", outside / "moved.txt")
    finally:
        WATCH.root = None
    assert [entry.split(" ")[0] for entry in WATCH.outside] == ["open", "os.mkdir", "os.rename"]
    WATCH.outside.clear()
