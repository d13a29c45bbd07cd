"""Folders below a trusted base, opened one name at a time without following symlinks.

A datastore folder is shared with runs (a mount input is the folder itself), so anything
below it may have been replaced by a symlink to elsewhere. Every write, rename, listing and
delete under a datastore therefore goes through directory file descriptors: each name is
opened with `O_NOFOLLOW | O_DIRECTORY` relative to its parent's descriptor, and files are
opened, renamed and unlinked with `dir_fd=`. A symlink met on the way raises
`UploadError` naming it; it is never followed, so nothing outside the base is touched.

Only the base itself is opened by path: it is amlctl's own folder (inside the state dir).
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat as statmod
from collections.abc import Iterator, Sequence

from amlctl.uploads.atomic import TEMP_PREFIX
from amlctl.uploads.errors import UploadError

DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK


class DirChain:
    """Open descriptors of base and of each folder below it down to one folder.

    `fds[0]` is base, `fds[i]` the folder `parts[:i]`; `fd` is the last one. Close it (or
    use it as a context manager) to release them all.
    """

    def __init__(self, base: str, parts: Sequence[str], fds: list[int]) -> None:
        self.base = base
        self.parts = tuple(parts)
        self.fds = fds

    @property
    def fd(self) -> int:
        """The descriptor of the deepest folder."""
        return self.fds[-1]

    def close(self) -> None:
        """Close every descriptor; later calls do nothing."""
        fds, self.fds = self.fds, []
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)

    def __enter__(self) -> DirChain:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_chain(base: str, parts: Sequence[str], *, create: bool) -> DirChain | None:
    """Open base, then each of `parts` below it, never following a symlink.

    With `create`, missing folders (and base) are made; without it a missing folder gives
    None. A symlink on the way raises UploadError; a file where a folder should be raises
    NotADirectoryError (the caller knows what that means for its operation).
    """
    try:
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except FileNotFoundError:
        if not create:
            return None
        os.makedirs(base, exist_ok=True)
        fd = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    chain = DirChain(base, parts, [fd])
    try:
        for depth, name in enumerate(parts):
            child = _open_child(chain, depth, name, create=create)
            if child is None:
                chain.close()
                return None
            chain.fds.append(child)
    except BaseException:
        chain.close()
        raise
    return chain


def _open_child(chain: DirChain, depth: int, name: str, *, create: bool) -> int | None:
    parent = chain.fds[-1]
    for _attempt in range(2):
        try:
            return os.open(name, DIR_FLAGS, dir_fd=parent)
        except FileNotFoundError:
            if not create:
                return None
            with contextlib.suppress(FileExistsError):  # made meanwhile: open it next
                os.mkdir(name, 0o777, dir_fd=parent)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            check_not_link(parent, name, chain.base, chain.parts[: depth + 1])
            raise NotADirectoryError(errno.ENOTDIR, "not a folder",
                                     "/".join(chain.parts[: depth + 1])) from None
    raise FileNotFoundError(errno.ENOENT, "folder vanished while being made", name)


def check_not_link(dir_fd: int, name: str, base: str, shown: Sequence[str]) -> None:
    """Raise UploadError if `name` in the folder `dir_fd` is a symlink."""
    try:
        st = os.lstat(name, dir_fd=dir_fd)
    except FileNotFoundError:
        return
    if statmod.S_ISLNK(st.st_mode):
        raise UploadError(refused_link(base, shown))


def refused_link(base: str, shown: Sequence[str]) -> str:
    """The message for a symlink found at `base/shown` (shown: path parts below base)."""
    where = "/".join(shown)
    return (f"{where}: is a symbolic link in the datastore folder {base}; amlctl never "
            "follows links there (they could lead outside it): remove the link")


def open_file(dir_fd: int, name: str) -> int:
    """Open a regular file of the folder `dir_fd` for reading, refusing a link or a fifo."""
    fd = os.open(name, FILE_FLAGS, dir_fd=dir_fd)
    if not statmod.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file", name)
    os.set_blocking(fd, True)
    return fd


def walk_files(chain: DirChain) -> Iterator[tuple[str, int, os.DirEntry[str]]]:
    """(relpath below chain's folder, dir fd, entry) of every non-folder entry, depth first;
    a temp folder (named TEMP_PREFIX..., a store's stage) is an entry, never entered.

    Sub-folders are opened relative to their parent without following links (a symlinked
    folder is yielded as an entry, never entered). Only the descriptors of the folders on
    the current path are open at once. A dir fd is valid until the next item is taken.
    """
    stack: list[tuple[int, Iterator[os.DirEntry[str]], str, bool]] = [
        (chain.fd, iter(list(os.scandir(chain.fd))), "", False)]
    try:
        while stack:
            fd, entries, prefix, owned = stack[-1]
            entry = next(entries, None)
            if entry is None:
                stack.pop()
                if owned:
                    os.close(fd)
                continue
            if entry.is_dir(follow_symlinks=False) and not entry.name.startswith(TEMP_PREFIX):
                _enter(stack, fd, entry.name, prefix)
            else:
                yield prefix + entry.name, fd, entry
    finally:
        _close_all(stack)


def stat_files(chain: DirChain, stop_at: str) -> list[tuple[str, int, int, int, int]] | None:
    """(relpath, size, mtime_ns, ctime_ns, inode) of every regular file below chain's
    folder, in `walk_files` order, folders entered as it does (never through a link);
    None as soon as a name starting with `stop_at` is met. A plain loop, no generator: it
    runs once per file of a folder that may hold many thousands."""
    out: list[tuple[str, int, int, int, int]] = []
    append = out.append
    stack: list[tuple[int, Iterator[os.DirEntry[str]], str, bool]] = [
        (chain.fd, iter(list(os.scandir(chain.fd))), "", False)]
    try:
        while stack:
            fd, entries, prefix, owned = stack[-1]
            for entry in entries:
                name = entry.name
                if name.startswith(stop_at):
                    return None
                if entry.is_dir(follow_symlinks=False):
                    _enter(stack, fd, name, prefix)
                    break  # the folder first, then the rest of this one (as walk_files)
                if entry.is_file(follow_symlinks=False):
                    st = entry.stat(follow_symlinks=False)
                    if statmod.S_ISREG(st.st_mode):
                        append((prefix + name, st.st_size, st.st_mtime_ns, st.st_ctime_ns,
                                st.st_ino))
            else:
                stack.pop()
                if owned:
                    os.close(fd)
    finally:
        _close_all(stack)
    return out


def _enter(stack: list[tuple[int, Iterator[os.DirEntry[str]], str, bool]], fd: int,
           name: str, prefix: str) -> None:
    """Push the sub-folder `name` of `fd` on a walk's stack, opened without following a
    link; nothing when it is gone or no longer a folder (not ours)."""
    try:
        child = os.open(name, DIR_FLAGS, dir_fd=fd)
    except (FileNotFoundError, NotADirectoryError, OSError) as exc:
        if isinstance(exc, FileNotFoundError) or exc.errno in (errno.ELOOP, errno.ENOTDIR):
            return  # replaced or removed while we walked: not ours
        raise
    try:
        listed = list(os.scandir(child))
    except BaseException:
        os.close(child)
        raise
    stack.append((child, iter(listed), prefix + name + "/", True))


def _close_all(stack: list[tuple[int, Iterator[os.DirEntry[str]], str, bool]]) -> None:
    for fd, _entries, _prefix, owned in stack:
        if owned:
            with contextlib.suppress(OSError):
                os.close(fd)
