"""Nothing outside a datastore folder is written, listed or deleted through a symlink that
a run (which mounts the datastore folder itself) may have planted there."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from enginekit import Cli

from amlctl.uploads import FolderFileStore, RemoteFile, UploadError

EVIL_UPLOAD = """
  evil:
    datastore: default
    src_dir: data
    target_path: evil/sub
    delete_extra: true
"""


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def add_upload(project: Path, text: str) -> None:
    manifest = project / "amlctl.yaml"
    manifest.write_text(manifest.read_text().replace("uploads:\n", "uploads:" + text, 1))


def test_apply_refuses_an_upload_through_a_link_in_the_datastore(
    project: Path, cli: Cli, tmp_path_factory: pytest.TempPathFactory
) -> None:
    assert cli("apply", "--auto-approve").code == 0
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "sub").mkdir()
    (elsewhere / "sub" / "victim.txt").write_text("not amlctl's")
    [default] = project.glob(".amlctl/workspaces/*/datastores/default")
    (default / "evil").symlink_to(elsewhere)
    add_upload(project, EVIL_UPLOAD)

    for command in (("plan",), ("apply", "--auto-approve")):
        result = cli(*command)
        assert result.code == 1, result
        assert "evil: is a symbolic link in the datastore folder" in result.stderr
        assert "Traceback" not in result.stderr
    assert snapshot(elsewhere) == {"sub/victim.txt": b"not amlctl's"}


def store_with_link(tmp_path: Path) -> tuple[Path, Path, Path]:
    datastore, elsewhere = tmp_path / "datastore", tmp_path / "elsewhere"
    (elsewhere / "sub").mkdir(parents=True)
    (elsewhere / "sub" / "victim.txt").write_text("victim")
    datastore.mkdir()
    (datastore / "evil").symlink_to(elsewhere)
    src = tmp_path / "f.txt"
    src.write_text("payload")
    return datastore, elsewhere, src


@pytest.mark.parametrize("target", ["evil", "evil/sub", "evil/sub/deeper"])
def test_a_link_on_the_target_path_is_refused_by_every_operation(
    tmp_path: Path, target: str
) -> None:
    datastore, elsewhere, src = store_with_link(tmp_path)
    store = FolderFileStore(datastore / target, tmp_path / "index.db", within=datastore)
    for operation in (store.list_files, lambda: store.put_file(src, "x.txt"),
                      lambda: store.delete_file("victim.txt")):
        with pytest.raises(UploadError, match="evil: is a symbolic link"):
            operation()
    store.close()
    assert snapshot(elsewhere) == {"sub/victim.txt": b"victim"}


def test_a_link_below_the_target_is_neither_listed_nor_written_through(tmp_path: Path) -> None:
    datastore, elsewhere, src = store_with_link(tmp_path)
    store = FolderFileStore(datastore, tmp_path / "index.db", within=datastore)
    assert store.list_files() == {}  # evil/sub/victim.txt is not listed through the link
    with pytest.raises(UploadError, match="evil: is a symbolic link"):
        store.put_file(src, "evil/sub/x.txt")
    with pytest.raises(UploadError, match="evil: is a symbolic link"):
        store.delete_file("evil/sub/victim.txt")
    store.close()
    assert snapshot(elsewhere) == {"sub/victim.txt": b"victim"}
    assert (datastore / "evil").is_symlink()


def test_a_folder_swapped_for_a_link_before_the_commit_is_refused(tmp_path: Path) -> None:
    datastore, elsewhere, src = store_with_link(tmp_path)
    store = FolderFileStore(datastore, tmp_path / "index.db", within=datastore)
    store.put_file(src, "good/x.txt")  # written as a temp file, not yet renamed
    # A run swaps the folder for a link to elsewhere before the rename.
    os.rename(datastore / "good", tmp_path / "moved")
    (datastore / "good").symlink_to(elsewhere / "sub")
    with pytest.raises(UploadError, match="good: is a symbolic link"):
        store.flush()
    store.close()
    assert snapshot(elsewhere) == {"sub/victim.txt": b"victim"}


def test_a_file_made_a_link_is_not_listed_nor_read(tmp_path: Path) -> None:
    datastore, elsewhere, src = store_with_link(tmp_path)
    with FolderFileStore(datastore / "t", tmp_path / "index.db", within=datastore) as store:
        store.put_file(src, "x.txt")
        store.flush()
        assert store.list_files() == {
            "x.txt": RemoteFile(7, hashlib.sha256(b"payload").hexdigest())}
        (datastore / "t" / "x.txt").unlink()
        (datastore / "t" / "x.txt").symlink_to(elsewhere / "sub" / "victim.txt")
        assert store.list_files() == {}
