"""Which files of src_dir an upload sends: ignore files, exclude:, symlinks, special files."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest
from upload_helpers import Env, tree, write

from amlctl.uploads import UploadError
from amlctl.uploads.scan import scan_tree


def names(src: Path, exclude: tuple[str, ...] = ()) -> list[str]:
    return [f.relpath for f in scan_tree(src, exclude).files]


def test_exclude_patterns_use_gitignore_syntax(tmp_path: Path) -> None:
    write(tmp_path, {
        "train.csv": "", "notes.tmp": "", "deep/er/x.tmp": "", "cache/blob": "",
        "sub/cache/blob": "", "top.log": "", "sub/top.log": "", "keep.tmp": "",
    })
    got = names(tmp_path, ("*.tmp", "!keep.tmp", "cache/", "/top.log"))
    assert got == ["keep.tmp", "sub/top.log", "train.csv"]


def test_amlignore_is_honoured_and_wins_over_gitignore(tmp_path: Path) -> None:
    write(tmp_path, {
        ".amlignore": "# data we do not ship\n*.ckpt\nlogs/\n",
        ".gitignore": "*.csv\n",
        "a.csv": "", "m.ckpt": "", "logs/run.txt": "", "src/m2.ckpt": "",
    })
    assert names(tmp_path) == [".amlignore", ".gitignore", "a.csv"]


def test_gitignore_is_used_when_there_is_no_amlignore(tmp_path: Path) -> None:
    write(tmp_path, {".gitignore": "*.csv\n__pycache__/\n", "a.csv": "", "b.py": "",
                     "__pycache__/b.pyc": ""})
    assert names(tmp_path) == [".gitignore", "b.py"]


def test_only_the_top_level_ignore_file_counts(tmp_path: Path) -> None:
    # As Azure ML's snapshot does: one ignore file, at the top of the folder.
    write(tmp_path, {"sub/.amlignore": "*.bin\n", "sub/x.bin": ""})
    assert names(tmp_path) == ["sub/.amlignore", "sub/x.bin"]


def test_exclude_applies_after_the_ignore_file(tmp_path: Path) -> None:
    write(tmp_path, {".amlignore": "!*.txt\n", "a.txt": "", "b.md": ""})
    assert names(tmp_path, ("*.txt", ".amlignore")) == ["b.md"]


def test_files_inside_an_excluded_folder_cannot_be_re_included(tmp_path: Path) -> None:
    write(tmp_path, {"out/keep.txt": "", "out2/keep.txt": "", "out2/drop.txt": ""})
    assert names(tmp_path, ("out/", "!out/keep.txt", "out2/*", "!out2/keep.txt")) == [
        "out2/keep.txt"
    ]


def test_symlink_out_of_src_is_refused_naming_it(tmp_path: Path) -> None:
    src = tmp_path / "src"
    write(src, {"ok.txt": "fine"})
    (tmp_path / "secret.txt").write_text("outside")
    (src / "sub").mkdir()
    (src / "sub" / "leak").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(UploadError, match=r"sub/leak: symlink points outside src_dir"):
        scan_tree(src)
    # ...unless the user excluded it.
    assert names(src, ("leak",)) == ["ok.txt"]


def test_symlinked_folder_out_of_src_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "data").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(UploadError, match="data: symlink points outside"):
        scan_tree(src)


def test_symlinks_inside_src_are_followed(env: Env) -> None:
    write(env.src, {"real/a.txt": "A", "real/b.txt": "B"})
    (env.src / "alias.txt").symlink_to("real/a.txt")
    (env.src / "latest").symlink_to("real", target_is_directory=True)
    assert names(env.src) == ["alias.txt", "latest/a.txt", "latest/b.txt", "real/a.txt",
                              "real/b.txt"]
    env.sync()
    assert tree(env.dst)["alias.txt"] == b"A"
    assert tree(env.dst)["latest/b.txt"] == b"B"
    assert not any(p.is_symlink() for p in env.dst.rglob("*"))


def test_symlink_loop_is_refused(tmp_path: Path) -> None:
    write(tmp_path, {"a/x.txt": ""})
    (tmp_path / "a" / "back").symlink_to("..", target_is_directory=True)
    with pytest.raises(UploadError, match="a/back: symlink loop"):
        scan_tree(tmp_path)


def test_dangling_symlink_inside_is_skipped_with_a_warning(tmp_path: Path) -> None:
    write(tmp_path, {"a.txt": ""})
    (tmp_path / "gone").symlink_to("nothing-here")
    scan = scan_tree(tmp_path)
    assert [f.relpath for f in scan.files] == ["a.txt"]
    assert scan.warnings == ("skipped gone: dangling symlink or vanished during the scan",)


def test_fifo_and_socket_are_skipped_with_warnings_and_never_opened(env: Env) -> None:
    write(env.src, {"a.txt": "A"})
    os.mkfifo(env.src / "pipe")  # opening it would block the plan forever
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(env.src / "sock"))
        plan = env.plan()
        assert [f.relpath for f in plan.add] == ["a.txt"]
        assert plan.warnings == (
            "skipped pipe: a fifo, not a regular file",
            "skipped sock: a socket, not a regular file",
        )
        result = env.sync()
    finally:
        sock.close()
    assert result.warnings == plan.warnings
    assert tree(env.dst) == {"a.txt": b"A"}


def test_names_that_are_not_utf8_or_look_like_temp_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, {"ok.txt": "", ".amlctl-tmp-1-abc": ""})
    fd = os.open(os.fsencode(tmp_path) + b"/bad-\xff.bin", os.O_CREAT | os.O_WRONLY, 0o644)
    os.close(fd)
    scan = scan_tree(tmp_path)
    assert [f.relpath for f in scan.files] == ["ok.txt"]
    assert scan.warnings == (
        "skipped 'bad-\\udcff.bin': file name is not valid UTF-8",
        "skipped .amlctl-tmp-1-abc: name is reserved for upload temp files",
    )


def test_src_dir_must_be_a_folder(tmp_path: Path) -> None:
    with pytest.raises(UploadError, match="src_dir is not a folder"):
        scan_tree(tmp_path / "missing")
