"""apply_sync: parallel copies, progress, failures that stop cleanly, and resuming."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from upload_helpers import Env, opened_files, tree, write

from amlctl.uploads import FileChange, UploadError, apply_sync, plan_sync, progress_for
from amlctl.uploads.progress import RichBar, SummaryLine, human_bytes, summary


class Recorder:
    """A SyncProgress that keeps every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[object, ...]] = []

    def start(self, files: int, nbytes: int) -> None:
        self.calls.append(("start", files, nbytes))

    def advance(self, relpath: str, nbytes: int) -> None:
        self.calls.append(("advance", relpath, nbytes))

    def finish(self) -> None:
        self.calls.append(("finish",))


def test_apply_copies_everything_once_and_reports_progress(env: Env) -> None:
    files = {f"d{i % 5}/f{i:03d}": os.urandom(i * 97) for i in range(60)}
    write(env.src, files)
    recorder = Recorder()
    with env.store() as store, env.cache() as cache:
        plan = plan_sync(env.src, store.list_files(), cache=cache)
        with opened_files() as opened:
            result = apply_sync(plan, env.src, store, progress=recorder, workers=4, cache=cache)
    assert tree(env.dst) == files
    src_opens = [p for p in opened if p.startswith(str(env.src))]
    assert sorted(src_opens) == sorted(str(env.src / p) for p in files)  # each read once
    assert recorder.calls[0] == ("start", 60, sum(len(d) for d in files.values()))
    assert recorder.calls[-1] == ("finish",)
    advanced = sorted(c[1:] for c in recorder.calls if c[0] == "advance")
    assert advanced == sorted((p, len(d)) for p, d in files.items())
    assert result.bytes_sent == plan.bytes_to_send
    assert [f.relpath for f in result.sent] == sorted(files)


def test_failure_stops_raises_with_partial_result_and_next_apply_resumes(env: Env) -> None:
    write(env.src, {f"f{i:02d}": f"data {i}" for i in range(20)})
    with env.store() as store, env.cache() as cache:
        plan = plan_sync(env.src, store.list_files(), cache=cache)
        (env.src / "f07").unlink()  # vanishes between plan and apply
        recorder = Recorder()
        with pytest.raises(UploadError, match=r"f07: gone from .* since the plan") as caught:
            apply_sync(plan, env.src, store, progress=recorder, workers=1, cache=cache)
    partial = caught.value.partial
    assert partial is not None
    assert all(f.relpath != "f07" for f in partial.sent)
    assert recorder.calls[-1] == ("finish",)
    sent_first = {f.relpath for f in partial.sent}
    plan = env.plan()
    assert {c.relpath for c in plan.add} == {f"f{i:02d}" for i in range(20)} - sent_first - {
        "f07"}
    env.sync()
    assert not env.plan().has_changes


def test_file_changed_between_plan_and_apply_is_sent_as_it_is_now(env: Env) -> None:
    write(env.src, {"a.txt": "one"})
    env.sync()
    write(env.src, {"a.txt": "two"})  # same size: the plan hashes it, so knows its sha
    with env.store() as store, env.cache() as cache:
        plan = plan_sync(env.src, store.list_files(), cache=cache)
        assert plan.change[0].sha256 is not None
        write(env.src, {"a.txt": "six"})
        result = apply_sync(plan, env.src, store, cache=cache)
    assert result.warnings == ("a.txt: changed since the plan; sent as it is now",)
    assert (env.dst / "a.txt").read_text() == "six"
    assert not env.plan().has_changes


def test_result_to_dict(env: Env) -> None:
    write(env.src, {"a": "abc"})
    data = env.sync().to_dict()
    assert data["sent"] == [{"path": "a", "size": 3, "sha256": data["sent"][0]["sha256"]}]
    assert (data["deleted"], data["bytes_sent"], data["warnings"]) == ([], 3, [])


def test_summary_line_when_not_a_terminal(env: Env) -> None:
    write(env.src, {"a": "x" * 2048, "b": "y" * 1024})
    stream = io.StringIO()
    with env.store() as store:
        plan = plan_sync(env.src, store.list_files())
        apply_sync(plan, env.src, store, progress=progress_for("upload.data", stream))
    line = stream.getvalue()
    assert line.startswith("upload.data: 2 files, 3.0 KiB in ")
    assert line.count("\n") == 1


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_on_a_terminal(env: Env) -> None:
    write(env.src, {"a": "x" * 5000})
    stream = Terminal()
    progress = progress_for("upload.data", stream)
    assert isinstance(progress, RichBar)
    with env.store() as store:
        apply_sync(plan_sync(env.src, store.list_files()), env.src, store, progress=progress)
    shown = stream.getvalue()
    assert "upload.data" in shown
    assert "1/1 files" in shown


def test_progress_helpers() -> None:
    assert isinstance(progress_for("x", io.StringIO()), SummaryLine)
    assert summary("u", 0, 0, 1.0) == "u: nothing to upload"
    assert summary("u", 1, 1536, 0.5) == "u: 1 file, 1.5 KiB in 0.50s (3.0 KiB/s)"
    assert human_bytes(3 * 1024**3) == "3.0 GiB"


def test_importing_the_package_does_not_import_rich_nor_ctypes() -> None:
    """Neither is needed to plan: rich draws progress on a terminal, ctypes reaches syncfs
    for a commit of many files; both are imported when used."""
    code = "import sys, amlctl.uploads; print('rich' in sys.modules, 'ctypes' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True, cwd=Path(__file__).parent).stdout
    assert out.strip() == "False False"


def test_small_files_travel_in_batches_large_ones_alone() -> None:
    from amlctl.uploads.workpool import BATCH_BYTES, BATCH_FILES, _batches

    items = [FileChange("big1", BATCH_BYTES * 2), FileChange("big2", BATCH_BYTES)]
    items += [FileChange(f"s{i:03d}", 100) for i in range(BATCH_FILES + 5)]
    items += [FileChange("m1", BATCH_BYTES - 1), FileChange("m2", 10)]
    batches = [[c.relpath for c in batch] for batch in _batches(items)]
    assert batches[:2] == [["big1"], ["big2"]]
    assert len(batches[2]) == BATCH_FILES
    assert batches[3][-1] == f"s{BATCH_FILES + 4:03d}"
    assert batches[4:] == [["m1"], ["m2"]]  # m1 alone would overflow the byte budget
