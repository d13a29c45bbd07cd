"""Plain data of a sync: what a store holds, what a plan says, what an apply did.

Every type here is an immutable value (the ones made by the thousand are named tuples:
cheaper to build and compare). `SyncPlan` and `SyncResult` turn into plain dicts
(`to_dict`) for the plan JSON and back (`SyncPlan.from_dict`), with stable keys and files
sorted by path, so the same inputs always give the same JSON.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple


class RemoteFile(NamedTuple):
    """One file in a store: its size, and its sha256 (hex) when the store knows it."""

    size: int
    sha256: str | None = None


class FileStat(NamedTuple):
    """What the hash cache trusts instead of reading a file.

    ctime is part of it because nothing but the kernel can set it: a same-size rewrite whose
    mtime was put back (os.utime, `touch -r`, tar) still moves ctime.
    """

    size: int
    mtime_ns: int
    ctime_ns: int
    ino: int
    dev: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileStat:
        """The fields of a stat result that identify one version of a file."""
        return cls(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


class LocalFile(NamedTuple):
    """A regular file found under src_dir. `path` is where to open it (a symlink inside
    src_dir is opened through its own path); `stat` describes what it points to."""

    relpath: str
    path: str
    stat: FileStat


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file of a plan.

    For add and change, `size`/`sha256` are the local file's (sha256 None: not read at plan
    time, since nothing needed it) and `remote_*` what the store holds (None for an add).
    For delete, `size`/`sha256` are the remote file's.
    """

    relpath: str
    size: int
    sha256: str | None = None
    remote_size: int | None = None
    remote_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form; the remote fields only when there is a remote file."""
        out: dict[str, Any] = {"path": self.relpath, "size": self.size, "sha256": self.sha256}
        if self.remote_size is not None:
            out["remote_size"] = self.remote_size
            out["remote_sha256"] = self.remote_sha256
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FileChange:
        """Inverse of `to_dict`."""
        return cls(
            relpath=data["path"],
            size=data["size"],
            sha256=data.get("sha256"),
            remote_size=data.get("remote_size"),
            remote_sha256=data.get("remote_sha256"),
        )


@dataclass(frozen=True)
class SyncPlan:
    """The file-level difference between src_dir and a store.

    `unchanged`: local files the store already holds with the same content.
    `kept_extra`: store files absent locally, left alone because delete_extra is off.
    `hashed`: local files read at plan time to settle a doubt (not in the hash cache).
    `remote_digest`: digest of the store listing the plan was made from (see
    `listing_digest`), so a saved plan can be refused if the store changed since.
    """

    add: tuple[FileChange, ...]
    change: tuple[FileChange, ...]
    delete: tuple[FileChange, ...]
    unchanged: int
    kept_extra: int
    hashed: int
    delete_extra: bool
    remote_digest: str
    warnings: tuple[str, ...] = ()

    @property
    def bytes_to_send(self) -> int:
        """Bytes of every file to add or change, as sized at plan time."""
        return sum(f.size for f in self.add) + sum(f.size for f in self.change)

    @property
    def has_changes(self) -> bool:
        """True when applying the plan would touch the store."""
        return bool(self.add or self.change or self.delete)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for the plan JSON."""
        return {
            "add": [f.to_dict() for f in self.add],
            "change": [f.to_dict() for f in self.change],
            "delete": [f.to_dict() for f in self.delete],
            "bytes_to_send": self.bytes_to_send,
            "unchanged": self.unchanged,
            "kept_extra": self.kept_extra,
            "hashed": self.hashed,
            "delete_extra": self.delete_extra,
            "remote_digest": self.remote_digest,
            "warnings": list(self.warnings),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncPlan:
        """Inverse of `to_dict` (bytes_to_send is derived, so it is not read back)."""
        return cls(
            add=tuple(FileChange.from_dict(f) for f in data["add"]),
            change=tuple(FileChange.from_dict(f) for f in data["change"]),
            delete=tuple(FileChange.from_dict(f) for f in data["delete"]),
            unchanged=data["unchanged"],
            kept_extra=data["kept_extra"],
            hashed=data["hashed"],
            delete_extra=data["delete_extra"],
            remote_digest=data["remote_digest"],
            warnings=tuple(data.get("warnings", ())),
        )


@dataclass(frozen=True, slots=True)
class SentFile:
    """A file written to the store by an apply: what the store now holds."""

    relpath: str
    size: int
    sha256: str | None


@dataclass(frozen=True)
class SyncResult:
    """What an apply did. `sent` is sorted by path."""

    sent: tuple[SentFile, ...]
    deleted: tuple[str, ...]
    seconds: float
    warnings: tuple[str, ...] = ()

    @property
    def bytes_sent(self) -> int:
        """Bytes written to the store."""
        return sum(f.size for f in self.sent)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for journals and `--json` output."""
        return {
            "sent": [{"path": f.relpath, "size": f.size, "sha256": f.sha256} for f in self.sent],
            "deleted": list(self.deleted),
            "bytes_sent": self.bytes_sent,
            "seconds": round(self.seconds, 3),
            "warnings": list(self.warnings),
        }
