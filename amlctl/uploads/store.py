"""The remote side of a sync: a flat set of files under one target path of a datastore.

A backend implements `FileStore` once per upload target (`<datastore>/<target_path>`); the
local backend uses `FolderFileStore`, the azure one lists blobs with their size and the
sha256 it keeps in blob metadata.

Contract for implementations:
- relpaths are posix, relative to the target path, checked by `check_relpath`;
- `list_files` returns every complete file, never a temp or partial one; sha256 may be None
  when the store does not know it (the plan then treats equal sizes as a change);
- `put_file` is atomic: readers see the old file (or none) or the whole new one, never a
  part; it returns what the store holds for relpath, with the sha256 of the bytes it sent
  (read from src once); src is read to its end, whatever its kind;
- a store may hold written files back until its optional `flush()` (FolderFileStore does,
  to share one flush to disk among many files): `apply_sync` calls `flush()`, when the
  store has one, before it returns or raises; `list_files` shows them all;
- a store whose `flush` takes `during=` (a callable it calls once, on the flushing thread,
  while the data goes to disk) says so with `flush_during = True`: `apply_sync` then writes
  the hash cache there, not on a thread of its own;
- `delete_file` of an absent file is not an error;
- `put_file` and `delete_file` may run at once in several threads, never two for the same
  relpath; `list_files` never runs at the same time as either;
- a store may say how many copies at once suit it in an optional `parallelism` attribute
  (a local folder: about one per core, as copying is CPU-bound; a network store more);
- a store may offer `prepare(files)`: `apply_sync` calls it with the number of files it
  is about to put, before the first (FolderFileStore then publishes a new folder's files
  with one rename);
- a store may offer `put_file_stat(src, relpath) -> (RemoteFile, FileStat)`: `put_file`
  also giving src's stat (`FileStat.of(os.fstat(...))`) taken once src is open, before any
  byte is read; `apply_sync` then keys the hash cache on it instead of a stat of its own;
- a store may offer, all three together, `fingerprint() -> str | None` (a digest of what
  describes its files without reading them, e.g. their stats: equal fingerprints mean
  `list_files` would give the same listing; None when it cannot tell), the same with the
  listing `list_files_fingerprinted() -> (listing, fingerprint or None)`, and
  `fingerprint_key` (a str naming the store among others); `plan_sync` then spares an
  unchanged upload the listing (see `sync`); with them, `fingerprint_ahead(files)` (files:
  how many the store held at the last fingerprint): an object whose `result()` is
  `fingerprint()` made meanwhile (FolderFileStore: in a forked child, for thousands of
  files), and `cancel()` drops it;
- a store may offer `put_files_stat(src_root, [(relpath, expected size), ...])`:
  `put_file_stat` of each (src: src_root/relpath) in order, stopping at the first failure,
  returning what the files put gave and that failure (None if none), never raising it;
  `apply_sync` gives it the small files a batch at a time (FolderFileStore copies them in
  helper processes).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from amlctl.uploads.errors import UploadError
from amlctl.uploads.model import RemoteFile


class FileStore(Protocol):
    """Files under one datastore target path (see module doc for the contract)."""

    def list_files(self) -> dict[str, RemoteFile]:
        """relpath (posix) -> size and sha256 (or None) of every complete file."""
        ...

    def put_file(self, src: Path, relpath: str) -> RemoteFile:
        """Write src's bytes as relpath, atomically."""
        ...

    def delete_file(self, relpath: str) -> None:
        """Remove relpath if present."""
        ...


_BAD_PARTS = frozenset(("", ".", ".."))


def check_relpath(relpath: str) -> str:
    """Return relpath if it is a clean posix path inside the target, else raise UploadError."""
    if (
        not relpath
        or relpath.startswith("/")
        or "\x00" in relpath
        or not _BAD_PARTS.isdisjoint(relpath.split("/"))
    ):
        raise UploadError(f"{relpath!r}: not a relative path inside the upload target")
    return relpath
