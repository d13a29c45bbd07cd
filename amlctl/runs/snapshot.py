"""A run's source snapshot: which files of source_directory belong to it, and their copy.

A snapshot follows the same rules as an upload's src_dir (`amlctl.uploads.scan`), so a file
an upload refuses is never copied into a run either:
- `.amlignore` (or, without one, `.gitignore`) at the top of the source folder excludes
  files, with git's syntax, as Azure ML does; `__pycache__` folders, `.pyc` files, and the
  top-level `.git/` and `.amlctl/` folders are always left out, and so is amlctl's state
  folder wherever it sits (`never`);
- a symlink pointing outside source_directory is an error naming it (`RunError`); one inside
  is followed (a file is copied as its content, a folder walked); a dangling one, sockets
  and pipes are skipped.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from pathlib import Path

from amlctl.runs.errors import RunError
from amlctl.uploads.errors import UploadError
from amlctl.uploads.model import LocalFile
from amlctl.uploads.scan import scan_tree

# Never part of a run: bytecode, git's own folder (it changes without any source edit), and
# the local backend's home, which sits beside the manifest and holds earlier snapshots.
ALWAYS_IGNORED = ("__pycache__/", "*.pyc", "/.git/", "/.amlctl/")


def _scan(source_dir: Path, never: Sequence[Path]) -> tuple[LocalFile, ...]:
    # The always-ignored rules come last, so they win over the folder's own.
    home = os.environ.get("AMLCTL_HOME")  # a state folder elsewhere than .amlctl/
    never = (*never, Path(home)) if home else tuple(never)
    try:
        return scan_tree(source_dir, ALWAYS_IGNORED, never, label="source_directory").files
    except UploadError as exc:
        raise RunError(str(exc)) from None


def source_files(source_dir: Path, never: Sequence[Path] = ()) -> list[str]:
    """Relative POSIX paths of the files that make up a snapshot of `source_dir`, sorted."""
    return [f.relpath for f in _scan(source_dir, never)]


def copy_snapshot(source_dir: Path, dest: Path, never: Sequence[Path] = ()) -> list[str]:
    """Copy the snapshot's files into `dest` (created); returns the relative paths copied."""
    files = _scan(source_dir, never)
    dest.mkdir(parents=True, exist_ok=True)
    for local in files:
        target = dest / local.relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(local.path, target)
    return [f.relpath for f in files]
