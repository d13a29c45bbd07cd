"""Walk src_dir into the list of regular files to upload, reading no file contents.

Rules:
- paths are posix and relative to src_dir; ignore rules (see `ignore`) apply first, so an
  excluded entry is never looked at further, and an excluded folder is not entered;
- a symlink whose target lies outside src_dir raises `UploadError` naming it; one inside is
  followed (a file: uploaded under the link's name; a folder: walked) unless it closes a loop
  (`UploadError`); a dangling one is skipped with a warning;
- folders listed in `never` (amlctl's own state folder: its databases, run snapshots and
  secrets must never be uploaded) are left out wherever they sit, found by identity (device
  and inode), so a symlink or another spelling of the path does not get them in; an src_dir
  at or inside one of them raises `UploadError`;
- fifos, sockets and devices are skipped with a warning (never opened: a fifo would block),
  as are names that are not valid UTF-8 and names that look like our temp files;
- the result is sorted by relpath.
"""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from amlctl.uploads.atomic import TEMP_PREFIX, is_temp_name
from amlctl.uploads.errors import UploadError
from amlctl.uploads.ignore import IgnoreRules, load_ignore_rules
from amlctl.uploads.model import FileStat, LocalFile

# relpath, then the fields of FileStat: what a scan finds of each file, as a plain tuple
# (cheap to build, and marshal can write a list of them to fingerprint a tree).
StatRow = tuple[str, int, int, int, int, int]


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC


@dataclass(frozen=True)
class Scan:
    """The files of src_dir to upload, and what was skipped, in words.

    `rows` holds each file's relpath and stat, sorted by relpath; `files` the same files
    as LocalFile (made when first asked for: a plan that finds nothing changed needs
    only the rows). `base` is src_dir made absolute, ending in "/".
    """

    base: str
    rows: tuple[StatRow, ...]
    warnings: tuple[str, ...]

    @cached_property
    def files(self) -> tuple[LocalFile, ...]:
        """The files to upload, sorted by relpath."""
        base, new = self.base, tuple.__new__
        return tuple([new(LocalFile, (row[0], base + row[0], new(FileStat, row[1:])))
                      for row in self.rows])


def scan_tree(src_dir: Path, exclude: Sequence[str] = (), never: Sequence[Path] = (), *,
              label: str = "src_dir") -> Scan:
    """List the regular files under src_dir that an upload sends (see module doc).

    `LocalFile.path` is absolute (src_dir made absolute, symlinks in it kept), which is the
    key of the hash cache. `label` names src_dir in messages (a run's snapshot uses these
    rules too, for its source_directory).
    """
    if not src_dir.is_dir():
        raise UploadError(f"{src_dir}: {label} is not a folder")
    rules = load_ignore_rules(src_dir, exclude)
    root_real = os.path.realpath(src_dir)
    skipped = _identities(never)
    for folder in never:
        real = os.path.realpath(folder)
        if root_real == real or root_real.startswith(real.rstrip(os.sep) + os.sep):
            raise UploadError(f"{src_dir}: {label} is amlctl's state folder {folder} or inside "
                              "it; its files are never uploaded: choose another folder")
    files: list[StatRow] = []
    append = files.append
    has_rules = bool(rules)
    warnings: list[str] = []
    top = str(src_dir.absolute())
    # Each pending folder carries the real paths of the folders above it, to spot loops.
    pending: list[tuple[str, str, tuple[str, ...]]] = [(top, "", (root_real,))]
    while pending:
        folder, prefix, ancestors = pending.pop()
        # Listed through a descriptor, so each stat below resolves one name, not the whole
        # path again (cheaper in a deep tree); folders are opened by path, as scandir would.
        try:
            fd = os.open(folder, _DIR_FLAGS)
        except OSError as exc:
            raise UploadError(f"{prefix or '.'}: cannot list folder: {exc.strerror}") from exc
        try:
            try:
                with os.scandir(fd) as it:
                    entries = list(it)
            except OSError as exc:
                raise UploadError(
                    f"{prefix or '.'}: cannot list folder: {exc.strerror}") from exc
            for entry in entries:
                name = entry.name
                relpath = prefix + name
                # The common case, kept short (it runs once per file of the tree): a regular
                # file, not ignored: one stat, one tuple.
                if (
                    entry.is_file(follow_symlinks=False)
                    and (relpath.isascii() or _is_utf8(relpath))
                    and not (has_rules and rules.ignored(relpath, False))
                    and not name.startswith(TEMP_PREFIX)
                ):
                    st = entry.stat(follow_symlinks=False)
                    append((relpath, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino,
                            st.st_dev))
                elif not relpath.isascii() and not _is_utf8(relpath):
                    warnings.append(f"skipped {relpath!r}: file name is not valid UTF-8")
                else:
                    _visit(entry, os.path.join(folder, name), relpath, root_real, ancestors,
                           rules, files, warnings, pending, skipped, label)
        finally:
            os.close(fd)
    files.sort()  # by relpath: it comes first in each tuple and is unique
    # every path scanned is top joined with its relpath (folders are entered by their path)
    return Scan(top if top.endswith("/") else top + "/", tuple(files), tuple(sorted(warnings)))


def _visit(
    entry: os.DirEntry[str],
    path: str,
    relpath: str,
    root_real: str,
    ancestors: tuple[str, ...],
    rules: IgnoreRules,
    files: list[StatRow],
    warnings: list[str],
    pending: list[tuple[str, str, tuple[str, ...]]],
    skipped: frozenset[tuple[int, int]] = frozenset(),
    label: str = "src_dir",
) -> None:
    is_link = entry.is_symlink()
    try:
        st = os.stat(path) if is_link else entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        st = None  # a dangling symlink, or the entry vanished under us
    is_dir = st is not None and statmod.S_ISDIR(st.st_mode)
    if rules and rules.ignored(relpath, is_dir):
        return
    real = None
    if is_link:
        real = os.path.realpath(path)
        if real != root_real and not real.startswith(root_real.rstrip(os.sep) + os.sep):
            raise UploadError(
                f"{relpath}: symlink points outside {label} (to {real}); replace it with the "
                "file itself or exclude it"
            )
    if st is None:
        warnings.append(f"skipped {relpath}: dangling symlink or vanished during the scan")
    elif is_dir and (st.st_dev, st.st_ino) in skipped:
        return  # amlctl's state folder: never uploaded
    elif is_dir:
        real = real or os.path.join(ancestors[-1], entry.name)
        if real in ancestors:
            raise UploadError(f"{relpath}: symlink loop (points to an enclosing folder)")
        pending.append((path, relpath + "/", (*ancestors, real)))
    elif statmod.S_ISREG(st.st_mode):
        if is_temp_name(entry.name):
            warnings.append(f"skipped {relpath}: name is reserved for upload temp files")
        else:
            files.append((relpath, *FileStat.of(st)))
    else:
        warnings.append(f"skipped {relpath}: {_kind(st.st_mode)}, not a regular file")


def _identities(folders: Sequence[Path]) -> frozenset[tuple[int, int]]:
    """(device, inode) of each existing folder."""
    found = set()
    for folder in folders:
        try:
            st = os.stat(folder)
        except OSError:
            continue
        found.add((st.st_dev, st.st_ino))
    return frozenset(found)


def _kind(mode: int) -> str:
    if statmod.S_ISFIFO(mode):
        return "a fifo"
    if statmod.S_ISSOCK(mode):
        return "a socket"
    if statmod.S_ISCHR(mode) or statmod.S_ISBLK(mode):
        return "a device"
    return "a special file"


def _is_utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
