"""The stack's state, kept where its backend keeps it, behind one small interface.

State is what the engine remembers between applies: the stack's identity, the secret-free
attributes it last applied per address (so a plan can tell drift from a change), the step
journal (so an apply killed midway is detected and repaired by the next one), and the lock
that lets one apply run at a time. The engine only talks to `StateStore`; each provider says
where its state lives (`Provider.state_store()`): SQLite beside the manifest for the local
backend, a blob with a lease for the azure one.

`DocumentState` is the shape of a remote store: the whole state is one JSON document read
with a version tag (an ETag) and written back only if nobody changed it since; a subclass
supplies read, conditional write and the lock.
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import threading
import time
import uuid
from abc import ABC, abstractmethod
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

from amlctl.errors import StateError

FORMAT = 1
# Finished journal entries kept in a state document (unfinished ones are always kept).
JOURNAL_KEEP = 200


class StateStore(ABC):
    """The stack's identity, applied record, step journal and lock (see module docstring)."""

    location: str = ""  # where the state lives, for messages

    # lock ----------------------------------------------------------------------------------

    @abstractmethod
    def lock(self, command: str, timeout: float = 0.0) -> AbstractContextManager[str]:
        """Hold the stack's lock for the duration (yields its id); fail fast or wait up to
        `timeout` seconds when another holds it, naming the holder."""

    @abstractmethod
    def force_unlock(self, lock_id: str) -> tuple[dict[str, Any], str]:
        """Release a lock left by a holder that cannot release it; returns (holder, what was
        done)."""

    # identity ------------------------------------------------------------------------------

    @abstractmethod
    def identity(self) -> dict[str, Any] | None:
        """The recorded identity ({"id", "origin"}), None before the first write."""

    @abstractmethod
    def bind(self, origin: dict[str, Any]) -> None:
        """Check the state belongs to the manifest at `origin` (StateError when it belongs to
        another stack of the same name); the identity is recorded on the first write."""

    @abstractmethod
    def rebind(self, origin: dict[str, Any]) -> dict[str, Any]:
        """Record `origin` as this stack's manifest (it moved); returns the old identity."""

    # records -------------------------------------------------------------------------------

    @property
    def fingerprint_key(self) -> bytes | None:
        """The key of the stack's secret fingerprints (None: plain sha256)."""
        return None

    @abstractmethod
    def applied(self) -> dict[str, dict[str, Any]]:
        """Last applied attributes by address."""

    @abstractmethod
    def record_applied(self, address: str, attrs: dict[str, Any] | None) -> None:
        """Remember what was applied to `address` (None: it was deleted)."""

    @abstractmethod
    def forget_applied(self) -> int:
        """Drop the whole applied record (`state forget`); returns how many were dropped."""

    @abstractmethod
    def begin(self, apply_id: str, address: str, step: str) -> int:
        """Journal a step as begun; returns its id for `end`."""

    @abstractmethod
    def end(self, entry: int, ok: bool, detail: str | None = None) -> None:
        """Mark a journalled step done or failed."""

    @abstractmethod
    def interrupted(self) -> list[tuple[str, str]]:
        """(address, step) of steps begun but never finished: an apply was killed there."""

    @abstractmethod
    def clear_interrupted(self) -> None:
        """Mark interrupted steps as recovered once the repair has run."""

    @abstractmethod
    def document(self) -> dict[str, Any]:
        """The whole state as one JSON-able document, nothing secret in it (`state pull`)."""

    def notes(self) -> list[str]:
        """Things the user should hear about once (a migration)."""
        return []

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


def redacted(document: dict[str, Any]) -> dict[str, Any]:
    """A state document fit to print: the fingerprint key is replaced by a marker."""
    out = json.loads(json.dumps(document))
    if out.get("fingerprint_key"):
        out["fingerprint_key"] = "(sensitive)"
    return out


def describe_identity(identity: dict[str, Any]) -> str:
    """`manifest PATH (repository URL), stack id ID` for messages."""
    origin = identity.get("origin") or {}
    text = f"manifest {origin.get('manifest', '?')}"
    if origin.get("repository"):
        text += f" of {origin['repository']}"
    return f"{text}, stack id {identity.get('id', '?')}"


def check_origin(stack: str, identity: dict[str, Any] | None, origin: dict[str, Any],
                 location: str) -> None:
    """Refuse a manifest whose origin differs from the one the state belongs to."""
    if identity is None or identity.get("origin") == origin:
        return
    theirs = describe_identity(identity)
    raise StateError(
        f"stack {stack!r} in {location} belongs to another manifest ({theirs}); this is "
        f"{describe_identity({'origin': origin, 'id': 'new'})}. Two manifests with the same "
        "name would prune each other's resources. Give this manifest its own `name:`; or, "
        "if it is the same stack moved to a new path or repository, run "
        "`amlctl state rebind` from it.")


def manifest_origin(path: Path) -> dict[str, Any]:
    """Where a manifest lives, independent of the checkout's location on disk: its path
    relative to its git repository (and that repository's origin URL), or its file name."""
    path = path.resolve()
    for parent in path.parents:
        git = parent / ".git"
        if git.exists():
            origin: dict[str, Any] = {"manifest": path.relative_to(parent).as_posix()}
            url = _origin_url(git)
            if url:
                origin["repository"] = url
            return origin
    return {"manifest": path.name}


def _origin_url(git: Path) -> str | None:
    """`remote.origin.url` of a repository (plain read of its config; no git needed)."""
    config = git / "config"
    if git.is_file():  # a worktree or submodule: `gitdir: PATH`, config in the common dir
        try:
            target = Path(git.read_text().partition("gitdir:")[2].strip())
            target = target if target.is_absolute() else git.parent / target
            common = target / "commondir"
            base = target / common.read_text().strip() if common.exists() else target
            config = base / "config"
        except OSError:
            return None
    try:
        lines = config.read_text(errors="replace").splitlines()[:2000]
    except OSError:
        return None
    in_origin = False
    for line in lines:
        stripped = line.strip()
        if stripped.startswith("["):
            in_origin = stripped.replace(" ", "") in ('[remote"origin"]',)
        elif in_origin and stripped.startswith("url"):
            return _without_credentials(stripped.partition("=")[2].strip())
    return None


def _without_credentials(url: str) -> str:
    """A remote URL without a `user:token@` part (a token must never reach the state)."""
    scheme, sep, rest = url.partition("://")
    if sep and "@" in rest.split("/", 1)[0]:
        return f"{scheme}://{rest.split('@', 1)[1]}"
    return url


def new_document(stack: str) -> dict[str, Any]:
    """An empty state document: a fresh stack id and fingerprint key, nothing applied."""
    return {"format": FORMAT, "stack": stack, "serial": 0, "identity": None,
            "stack_id": uuid.uuid4().hex, "fingerprint_key":
            base64.b64encode(secrets.token_bytes(32)).decode(), "applied": {}, "journal": []}


class DocumentState(StateStore):
    """A state store whose state is one document, read with a version tag and written back
    conditionally (a lost race is a StateError, never an overwrite). Subclasses implement
    `_read`, `_write`, `lock` and `force_unlock`."""

    def __init__(self, stack: str) -> None:
        self.stack = stack
        self._mutex = threading.RLock()
        self._doc: dict[str, Any] | None = None
        self._etag: str | None = None
        self._origin: dict[str, Any] | None = None
        self._notes: list[str] = []

    @abstractmethod
    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        """(document, etag), or (None, None) when there is no state yet."""

    @abstractmethod
    def _write(self, document: dict[str, Any], etag: str | None) -> str:
        """Store `document` if the stored one still has `etag` (None: only if none exists);
        returns the new etag. Raises StateError when the condition fails."""

    def _initial(self) -> dict[str, Any]:
        """The document used when none is stored (a subclass may migrate older state)."""
        return new_document(self.stack)

    def reload(self) -> None:
        """Read the stored document again (after taking the lock)."""
        with self._mutex:
            doc, etag = self._read()
            if doc is not None and doc.get("format", 0) > FORMAT:
                raise StateError(f"the state in {self.location} was written by a newer amlctl "
                                 f"(format {doc.get('format')}); upgrade amlctl")
            if doc is not None:
                self._doc, self._etag = doc, etag
            elif self._doc is None or self._etag is not None:
                self._doc, self._etag = self._initial(), None
            # else: nothing stored yet and a first document is in memory: keep it (and its
            # fingerprint key, which this command already used)
            if self._origin is not None:
                check_origin(self.stack, self._doc.get("identity"), self._origin, self.location)

    def _unsaved(self) -> dict[str, Any]:
        """The document to create the stored state from (the one in memory, if any)."""
        with self._mutex:
            if self._doc is None or self._etag is not None:
                self._doc, self._etag = self._initial(), None
            return self._doc

    def _document(self) -> dict[str, Any]:
        if self._doc is None:
            self.reload()
        assert self._doc is not None
        return self._doc

    def _save(self) -> None:
        doc = self._document()
        if doc.get("identity") is None and self._origin is not None:
            doc["identity"] = {"id": doc["stack_id"], "origin": self._origin}
        doc["serial"] = int(doc.get("serial", 0)) + 1
        finished = [e for e in doc["journal"] if e["state"] != "begun"]
        if len(finished) > JOURNAL_KEEP:
            drop = {id(e) for e in finished[:len(finished) - JOURNAL_KEEP]}
            doc["journal"] = [e for e in doc["journal"] if id(e) not in drop]
        self._etag = self._write(doc, self._etag)

    # identity ------------------------------------------------------------------------------

    def identity(self) -> dict[str, Any] | None:
        with self._mutex:
            return self._document().get("identity")

    def bind(self, origin: dict[str, Any]) -> None:
        with self._mutex:
            self._origin = origin
            check_origin(self.stack, self._document().get("identity"), origin, self.location)

    def rebind(self, origin: dict[str, Any]) -> dict[str, Any]:
        with self._mutex:
            doc = self._document()
            old = doc.get("identity") or {}
            doc["identity"] = {"id": doc["stack_id"], "origin": origin}
            self._origin = origin
            self._save()
            return old

    @property
    def fingerprint_key(self) -> bytes | None:
        with self._mutex:
            return base64.b64decode(self._document()["fingerprint_key"])

    # records -------------------------------------------------------------------------------

    def applied(self) -> dict[str, dict[str, Any]]:
        with self._mutex:
            return {a: dict(r["attrs"]) for a, r in self._document()["applied"].items()}

    def record_applied(self, address: str, attrs: dict[str, Any] | None) -> None:
        with self._mutex:
            applied = self._document()["applied"]
            if attrs is None:
                applied.pop(address, None)
            else:
                applied[address] = {"attrs": json.loads(json.dumps(attrs, sort_keys=True)),
                                    "at": time.time()}
            self._save()

    def forget_applied(self) -> int:
        with self._mutex:
            doc = self._document()
            count = len(doc["applied"])
            doc["applied"] = {}
            self._save()
            return count

    def begin(self, apply_id: str, address: str, step: str) -> int:
        with self._mutex:
            journal = self._document()["journal"]
            entry = max((e["id"] for e in journal), default=0) + 1
            journal.append({"id": entry, "apply_id": apply_id, "address": address,
                            "step": step, "state": "begun", "detail": None, "at": time.time()})
            self._save()
            return entry

    def end(self, entry: int, ok: bool, detail: str | None = None) -> None:
        with self._mutex:
            for item in self._document()["journal"]:
                if item["id"] == entry:
                    item.update(state="done" if ok else "failed", detail=detail,
                                at=time.time())
            self._save()

    def interrupted(self) -> list[tuple[str, str]]:
        with self._mutex:
            return [(e["address"], e["step"]) for e in self._document()["journal"]
                    if e["state"] == "begun"]

    def clear_interrupted(self) -> None:
        with self._mutex:
            journal = self._document()["journal"]
            if any(e["state"] == "begun" for e in journal):
                for item in journal:
                    if item["state"] == "begun":
                        item["state"] = "recovered"
                self._save()

    def document(self) -> dict[str, Any]:
        with self._mutex:
            return redacted(self._document())

    def notes(self) -> list[str]:
        out, self._notes = self._notes, []
        return out


def local_history_document(state_dir: Path, stack: str) -> dict[str, Any] | None:
    """The applied record and unfinished journal steps of a local `engine.db`, as a state
    document (to migrate it into another store); None when it records nothing."""
    from amlctl.engine.history import ENGINE_DB, History

    if not (state_dir / ENGINE_DB).is_file() or not os.access(state_dir / ENGINE_DB, os.R_OK):
        return None
    history = History(state_dir, stack)
    try:
        applied = history.applied()
        interrupted = history.interrupted()
    finally:
        history.close()
    if not applied and not interrupted:
        return None
    doc = new_document(stack)
    # Secret fingerprints there are unkeyed; dropped, so none shows as drift under the new key.
    doc["applied"] = {a: {"attrs": {k: v for k, v in attrs.items()
                                    if not (isinstance(v, str) and v.startswith("sha256:"))},
                          "at": time.time()} for a, attrs in applied.items()}
    doc["journal"] = [{"id": i, "apply_id": "migrated", "address": address, "step": step,
                       "state": "begun", "detail": None, "at": time.time()}
                      for i, (address, step) in enumerate(interrupted, 1)]
    doc["migrated_from"] = str(state_dir / ENGINE_DB)
    return doc
