"""Source digest and spec hash: deterministic, blind to ignored files, alive to edits."""

from __future__ import annotations

from pathlib import Path

import pytest

from amlctl.runs.errors import RunError
from amlctl.runs.identity import source_digest, spec_hash
from amlctl.runs.snapshot import copy_snapshot, source_files
from amlctl.uploads import UploadError
from amlctl.uploads.scan import scan_tree


def make_tree(root: Path) -> Path:
    (root / "pkg").mkdir(parents=True)
    (root / "train.py").write_text("print('hi')\n")
    (root / "pkg" / "model.py").write_text("W = 1\n")
    return root


def test_digest_is_deterministic_and_location_independent(tmp_path: Path) -> None:
    a = make_tree(tmp_path / "a")
    b = make_tree(tmp_path / "b")
    assert source_digest(a) == source_digest(b) == source_digest(a)
    assert len(source_digest(a)) == 64


def test_digest_changes_on_content_edit_and_rename(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    before = source_digest(src)
    (src / "train.py").write_text("print('bye')\n")
    edited = source_digest(src)
    assert edited != before
    (src / "train.py").rename(src / "main.py")
    assert source_digest(src) not in (before, edited)


def test_pycache_and_amlignore_rules_are_left_out(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / ".amlignore").write_text("# scratch\n*.log\n/data/\nbuild/\n!keep.log\n")
    before = source_digest(src)
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\0")
    (src / "run.log").write_text("noise")
    (src / "keep.log").write_text("kept")
    (src / "data").mkdir()
    (src / "data" / "big.bin").write_bytes(b"x" * 100)
    (src / "pkg" / "data").mkdir()
    (src / "pkg" / "data" / "small.txt").write_text("not anchored at top: kept")
    (src / "pkg" / "build").mkdir()
    (src / "pkg" / "build" / "out.o").write_text("ignored at any depth")
    assert source_files(src) == [".amlignore", "keep.log", "pkg/data/small.txt",
                                 "pkg/model.py", "train.py"]
    with_kept = source_digest(src)
    assert with_kept != before  # keep.log and small.txt are part of it
    # edits to ignored files (rules from .amlignore and the built-in ones) change nothing
    (src / "run.log").write_text("more noise")
    (src / "data" / "big.bin").write_bytes(b"y")
    (src / "pkg" / "build" / "out.o").write_text("rebuilt")
    (src / "__pycache__" / "train.cpython-311.pyc").write_bytes(b"\1")
    assert source_digest(src) == with_kept


def test_git_and_the_local_backend_home_are_never_part_of_a_snapshot(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    before = source_digest(src)
    for folder in (".git", ".amlctl"):
        (src / folder).mkdir()
        (src / folder / "state").write_text("changes all the time")
    assert source_digest(src) == before


def test_gitignore_is_used_without_amlignore(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / ".gitignore").write_text("pkg/\n")
    assert source_files(src) == [".gitignore", "train.py"]


def test_snapshot_copies_exactly_the_digested_files(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / "__pycache__").mkdir()
    (src / "__pycache__" / "x.pyc").write_bytes(b"\0")
    copied = copy_snapshot(src, tmp_path / "snap")
    assert copied == ["pkg/model.py", "train.py"]
    assert source_digest(tmp_path / "snap") == source_digest(src)


def test_spec_hash_is_short_stable_and_sensitive() -> None:
    definition = {"entry_script": "train.py", "arguments": ["--steps", "5"],
                  "distribution": {"type": "none"}}
    reordered = {"distribution": {"type": "none"}, "arguments": ["--steps", "5"],
                 "entry_script": "train.py"}
    h = spec_hash(definition, "abc")
    assert len(h) == 16 and int(h, 16) >= 0
    assert spec_hash(reordered, "abc") == h
    assert spec_hash(definition, "abd") != h
    assert spec_hash({**definition, "arguments": ["--steps", "6"]}, "abc") != h


def test_secret_values_are_not_part_of_the_spec_hash() -> None:
    """A rotated secret is the same definition; adding a secret variable is not."""
    from amlctl.runs.identity import SECRET_MARK, without_secrets

    secret = "environment.env_vars.TOKEN"
    first = {"environment": {"env_vars": {"TOKEN": "sha256:aaaa", "MODE": "fast"}}}
    rotated = {"environment": {"env_vars": {"TOKEN": "sha256:bbbb", "MODE": "fast"}}}
    assert spec_hash(first, "d", [secret]) == spec_hash(rotated, "d", [secret])
    assert spec_hash(first, "d") != spec_hash(rotated, "d")  # named as secret or not: matters
    fewer = {"environment": {"env_vars": {"MODE": "fast"}}}
    assert spec_hash(fewer, "d", []) != spec_hash(first, "d", [secret])
    assert without_secrets(first, [secret])["environment"]["env_vars"] == {
        "TOKEN": SECRET_MARK, "MODE": "fast"}


def test_run_ids_are_deterministic_valid_and_new_for_a_resubmission() -> None:
    import re

    from amlctl.runs.identity import RUN_ID_MAX, run_id

    first = run_id("demo", "tf-mnist", "0123456789abcdef")
    assert first == run_id("demo", "tf-mnist", "0123456789abcdef")
    assert first != run_id("demo", "tf-mnist", "fedcba9876543210")
    assert first != run_id("other", "tf-mnist", "0123456789abcdef")
    again = run_id("demo", "tf-mnist", "0123456789abcdef", supersedes=first)
    assert again not in (first, run_id("demo", "tf-mnist", "0123456789abcdef",
                                       supersedes=again))
    odd = run_id("stack with spaces/é", "n" * 400, "0123456789abcdef")
    assert re.fullmatch(r"[A-Za-z0-9_-]+", odd) and len(odd) <= RUN_ID_MAX
    assert odd.endswith("_0123456789abcdef")


def test_a_symlink_leaving_the_source_folder_is_refused_as_uploads_refuse_it(
    tmp_path: Path,
) -> None:
    src = make_tree(tmp_path / "src")
    (tmp_path / "secret.txt").write_text("outside the source folder")
    (src / "leak.txt").symlink_to(tmp_path / "secret.txt")
    for operation in (lambda: source_files(src), lambda: source_digest(src),
                      lambda: copy_snapshot(src, tmp_path / "snap")):
        with pytest.raises(RunError, match=r"leak\.txt: symlink points outside "
                                           "source_directory"):
            operation()
    assert not (tmp_path / "snap" / "leak.txt").exists()
    with pytest.raises(UploadError, match=r"leak\.txt: symlink points outside src_dir"):
        scan_tree(src)


def test_links_inside_the_source_folder_are_followed_like_an_upload(tmp_path: Path) -> None:
    src = make_tree(tmp_path / "src")
    (src / "alias.py").symlink_to(src / "train.py")
    (src / "lib").symlink_to(src / "pkg")
    copied = copy_snapshot(src, tmp_path / "snap")
    assert copied == [f.relpath for f in scan_tree(src).files]
    assert copied == ["alias.py", "lib/model.py", "pkg/model.py", "train.py"]
    assert (tmp_path / "snap" / "alias.py").read_text() == "print('hi')\n"
    assert not (tmp_path / "snap" / "alias.py").is_symlink()


def test_the_state_folder_named_by_amlctl_home_is_never_in_a_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = make_tree(tmp_path / "src")
    before = source_digest(src)
    (src / "state").mkdir()
    (src / "state" / "state.db").write_text("changes every apply")
    monkeypatch.setenv("AMLCTL_HOME", str(src / "state"))
    assert source_digest(src) == before
    assert copy_snapshot(src, tmp_path / "snap") == ["pkg/model.py", "train.py"]
