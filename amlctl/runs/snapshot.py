"""A run's source snapshot: which files of source_directory belong to it, and their copy.

Like Azure ML, `.amlignore` (or, without one, `.gitignore`) at the top of the source folder
excludes files. The rules understood are the common gitignore subset: `#` comments, `!`
negation (last matching rule wins), a trailing `/` for folders only, a pattern with a `/`
anchored at the top (`*` may then cross folders), a pattern without one matching a name at any
depth. `__pycache__` folders, `.pyc` files, and the top-level `.git/` and `.amlctl/` folders
are always left out. Symlinked files are copied
as their content; symlinked folders, sockets and pipes are skipped.
"""

from __future__ import annotations

import fnmatch
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILES = (".amlignore", ".gitignore")
# Never part of a run: bytecode, git's own folder (it changes without any source edit), and
# the local backend's home, which sits beside the manifest and holds earlier snapshots.
ALWAYS_IGNORED = ("__pycache__/", "*.pyc", "/.git/", "/.amlctl/")


@dataclass(frozen=True)
class _Rule:
    pattern: str
    negate: bool
    dir_only: bool
    anchored: bool

    def matches(self, relpath: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.anchored:
            return fnmatch.fnmatchcase(relpath, self.pattern)
        return fnmatch.fnmatchcase(relpath.rsplit("/", 1)[-1], self.pattern)


def _parse(lines: list[str]) -> list[_Rule]:
    rules = []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        line = line[1:] if negate else line
        dir_only = line.endswith("/")
        line = line.rstrip("/")
        anchored = "/" in line
        line = line.lstrip("/")
        if line:
            rules.append(_Rule(line, negate, dir_only, anchored))
    return rules


def _rules(source_dir: Path) -> list[_Rule]:
    rules = _parse(list(ALWAYS_IGNORED))
    for name in IGNORE_FILES:
        path = source_dir / name
        if path.is_file():
            rules += _parse(path.read_text(errors="replace").splitlines())
            break
    return rules


def _ignored(rules: list[_Rule], relpath: str, is_dir: bool) -> bool:
    verdict = False
    for rule in rules:
        if rule.matches(relpath, is_dir):
            verdict = not rule.negate
    return verdict


def source_files(source_dir: Path) -> list[str]:
    """Relative POSIX paths of the files that make up a snapshot of `source_dir`, sorted."""
    rules = _rules(source_dir)
    found: list[str] = []
    for top, dirs, files in os.walk(source_dir):
        rel_top = Path(top).relative_to(source_dir).as_posix()
        prefix = "" if rel_top == "." else rel_top + "/"
        dirs[:] = [d for d in dirs
                   if not os.path.islink(os.path.join(top, d))
                   and not _ignored(rules, prefix + d, True)]
        for name in files:
            relpath = prefix + name
            try:
                mode = os.stat(os.path.join(top, name)).st_mode  # follows symlinks
            except OSError:
                continue  # a dangling symlink
            if stat.S_ISREG(mode) and not _ignored(rules, relpath, False):
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
