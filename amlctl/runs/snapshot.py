"""A run's source snapshot: which files of source_directory belong to it, and their copy.

Like Azure ML, `.amlignore` (or, without one, `.gitignore`) at the top of the source folder
excludes files, with git's syntax (the same rules as uploads, `amlctl.uploads.ignore`).
`__pycache__` folders, `.pyc` files, and the top-level `.git/` and `.amlctl/` folders
are always left out. Symlinked files are copied
as their content; symlinked folders, sockets and pipes are skipped.
"""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

from amlctl.uploads.ignore import load_ignore_rules

# Never part of a run: bytecode, git's own folder (it changes without any source edit), and
# the local backend's home, which sits beside the manifest and holds earlier snapshots.
ALWAYS_IGNORED = ("__pycache__/", "*.pyc", "/.git/", "/.amlctl/")


def source_files(source_dir: Path) -> list[str]:
    """Relative POSIX paths of the files that make up a snapshot of `source_dir`, sorted."""
    # The upload's gitignore rules serve here too; the always-ignored come last, so they win.
    rules = load_ignore_rules(source_dir, ALWAYS_IGNORED)
    found: list[str] = []
    for top, dirs, files in os.walk(source_dir):
        rel_top = Path(top).relative_to(source_dir).as_posix()
        prefix = "" if rel_top == "." else rel_top + "/"
        dirs[:] = [d for d in dirs
                   if not os.path.islink(os.path.join(top, d))
                   and not rules.ignored(prefix + d, True)]
        for name in files:
            relpath = prefix + name
            try:
                mode = os.stat(os.path.join(top, name)).st_mode  # follows symlinks
            except OSError:
                continue  # a dangling symlink
            if stat.S_ISREG(mode) and not rules.ignored(relpath, False):
                found.append(relpath)
    return sorted(found)


def copy_snapshot(source_dir: Path, dest: Path) -> list[str]:
    """Copy the snapshot's files into `dest` (created); returns the relative paths copied."""
    files = source_files(source_dir)
    dest.mkdir(parents=True, exist_ok=True)
    for relpath in files:
        target = dest / relpath
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source_dir / relpath, target)
    return files
