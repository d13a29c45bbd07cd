"""The azure backend's state: one JSON blob per stack, locked with a blob lease.

Where: the workspace's default blob datastore container, blob `amlctl-state/<stack>.json`,
unless the manifest's `state:` block names an account / container / key (Terraform's azurerm
backend does the same). Every write is conditional on the ETag amlctl read, so two runners
never overwrite each other's state silently: the loser gets an error.

The lock is a lease on that blob: finite (60 s), renewed by a background thread while the
command runs, the holder's record in the blob's metadata. A runner that dies (a cancelled CI
job) stops renewing, so its lease expires and blocks nobody for longer than that.
`force-unlock ID` breaks the lease at once.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from amlctl.engine.lock import describe, holder_record, kernel_lock
from amlctl.engine.state import DocumentState, local_history_document, new_document
from amlctl.errors import LockError, StateError, UsageError

PREFIX = "amlctl-state/"
LEASE_SECONDS = 60
HOLDER_KEY = "amlctl_lock"
POLL_SECONDS = 1.0


def default_blob_name(stack: str) -> str:
    """`amlctl-state/<stack>.json`."""
    return f"{PREFIX}{stack}.json"


def _code(exc: BaseException) -> str:
    return str(getattr(exc, "error_code", "") or "")


def _status(exc: BaseException) -> int | None:
    return getattr(exc, "status_code", None)


class BlobState(DocumentState):
    """State of one stack in one blob (see module docstring).

    `container` returns the ContainerClient, or None while the workspace holding the default
    datastore does not exist yet: until then the state stays in memory and the lock is a
    local one, and the first write after the workspace exists creates the blob (refusing
    if another runner created it meanwhile) and takes its lease.
    """

    def __init__(self, stack: str, container: Callable[[], Any | None], blob_name: str,
                 state_dir: Path, describe_location: str = "",
                 lease_seconds: int = LEASE_SECONDS) -> None:
        super().__init__(stack)
        self._container_factory = container
        self._container: Any = None
        self.blob_name = blob_name
        self.state_dir = state_dir
        self.lease_seconds = lease_seconds
        self.location = describe_location or f"blob {blob_name}"
        self._lease: Any = None
        self._holder: dict[str, Any] | None = None
        self._wants_lease = False
        self._renewer: threading.Thread | None = None
        self._stop = threading.Event()
        self._lease_error: str | None = None

    # the blob ----------------------------------------------------------------------------

    def _blob(self) -> Any | None:
        if self._container is None:
            self._container = self._container_factory()
        if self._container is None:
            return None
        return self._container.get_blob_client(self.blob_name)

    def _read(self) -> tuple[dict[str, Any] | None, str | None]:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._blob()
        if blob is None:
            return None, None
        try:
            downloader = blob.download_blob()
            data = downloader.readall()
        except ResourceNotFoundError as exc:
            if _code(exc) == "ContainerNotFound":
                raise StateError(f"{self.location}: the container does not exist; create it "
                                 "or fix the manifest's `state:` block") from None
            return None, None
        try:
            doc = json.loads(data)
        except ValueError:
            raise StateError(f"{self.location} is not an amlctl state document; move it "
                             "aside or point `state.key` elsewhere") from None
        if not isinstance(doc, dict) or "applied" not in doc or "journal" not in doc:
            raise StateError(f"{self.location} is not an amlctl state document")
        return doc, downloader.properties.etag

    def _initial(self) -> dict[str, Any]:
        migrated = local_history_document(self.state_dir, self.stack)
        if migrated is None:
            return new_document(self.stack)
        self._notes.append(f"Migrating the local state {migrated['migrated_from']} to "
                           f"{self.location}.")
        return migrated

    def _metadata(self) -> dict[str, str]:
        return {HOLDER_KEY: json.dumps(self._holder)} if self._holder else {}

    def _write(self, document: dict[str, Any], etag: str | None) -> str | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import HttpResponseError, ResourceExistsError

        if self._lease_error:
            raise StateError(f"lost the lock on {self.location} ({self._lease_error}); "
                             "another runner may hold it now. Nothing more was written; run "
                             "`amlctl plan` again.")
        blob = self._blob()
        if blob is None:
            return None  # no workspace yet: kept in memory until there is one
        data = json.dumps(document, sort_keys=True, indent=1).encode()
        kwargs: dict[str, Any] = {"metadata": self._metadata()}
        if self._lease is not None:
            kwargs["lease"] = self._lease
        try:
            if etag is None:
                result = blob.upload_blob(data, overwrite=False, **kwargs)
            else:
                result = blob.upload_blob(data, overwrite=True, etag=etag,
                                          match_condition=MatchConditions.IfNotModified,
                                          **kwargs)
        except HttpResponseError as exc:
            # A retry (sdk.state_blob_retry) of a write that landed but whose answer was lost
            # finds its own write: the condition fails. The blob holding exactly these bytes
            # means the write happened.
            landed = self._holds(blob, data) if _status(exc) in (409, 412) else None
            if landed is not None:
                result = {"etag": landed}
            elif isinstance(exc, ResourceExistsError):
                raise StateError(f"{self.location} was created by another runner while this "
                                 "one ran; nothing was overwritten. Run `amlctl plan` again."
                                 ) from None
            elif _status(exc) == 412:
                raise StateError(
                    f"{self.location} changed since amlctl read it ({_code(exc) or 'ETag'}: "
                    "another runner wrote it); nothing was overwritten. Run `amlctl plan` "
                    "again.") from None
            else:
                raise StateError(f"writing {self.location} failed: {exc}") from None
        new_etag = result.get("etag")
        if etag is None and self._wants_lease and self._lease is None:
            self._take_lease(blob, deadline=time.monotonic())  # the workspace exists now
            new_etag = blob.get_blob_properties().etag  # the holder record changed it
        return new_etag

    def _holds(self, blob: Any, data: bytes) -> str | None:
        """The blob's ETag when it holds exactly `data`, else None."""
        try:
            downloader = blob.download_blob()
            return downloader.properties.etag if downloader.readall() == data else None
        except Exception:  # unreadable: the caller reports the write's own failure
            return None

    # the lock ----------------------------------------------------------------------------

    def holder(self) -> dict[str, Any] | None:
        """The record of the runner holding the lease, None when nobody does."""
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._blob()
        if blob is None:
            return None
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            return None
        if getattr(props.lease, "state", None) != "leased":
            return None
        try:
            return json.loads((props.metadata or {}).get(HOLDER_KEY, "{}")) or {}
        except ValueError:
            return {}

    def _ensure_blob(self, blob: Any) -> None:
        """Create the state blob when there is none (a lease needs a blob)."""
        from azure.core.exceptions import ResourceExistsError

        doc, _ = self._read()
        if doc is not None:
            return
        with self._mutex:
            initial = self._unsaved()
            # another runner may make it first: fine, the lease decides
            with suppress(ResourceExistsError):
                blob.upload_blob(json.dumps(initial, sort_keys=True, indent=1).encode(),
                                 overwrite=False)

    def _take_lease(self, blob: Any, deadline: float) -> None:
        from azure.core.exceptions import HttpResponseError

        while True:
            try:
                lease = blob.acquire_lease(lease_duration=self.lease_seconds)
                break
            except HttpResponseError as exc:
                if _status(exc) != 409:
                    raise StateError(f"locking {self.location} failed: {exc}") from None
                if time.monotonic() >= deadline:
                    holder = self.holder() or {}
                    who = describe(holder) if holder else "held by another runner"
                    raise LockError(
                        f"the stack is locked: {who} ({self.location}). A "
                        f"holder that died releases it within {self.lease_seconds} s (its "
                        "lease expires); wait with --lock-timeout SECONDS, or if no apply is "
                        f"running, break it with `amlctl force-unlock {holder.get('id')}`."
                    ) from None
                time.sleep(POLL_SECONDS)
        self._lease = lease
        self._lease_error = None
        blob.set_blob_metadata(self._metadata(), lease=lease)
        self._stop.clear()
        self._renewer = threading.Thread(target=self._renew, name="amlctl-state-lease",
                                         daemon=True)
        self._renewer.start()

    def _renew(self) -> None:
        """Renew the lease until told to stop; a failed renewal poisons later writes."""
        interval = max(1.0, self.lease_seconds / 4)
        while not self._stop.wait(interval):
            lease = self._lease
            if lease is None:
                return
            try:
                lease.renew()
            except Exception as exc:
                self._lease_error = f"renewing the lease failed: {str(exc).splitlines()[0]}"
                return

    @contextmanager
    def lock(self, command: str, timeout: float = 0.0) -> Iterator[str]:
        self._holder = holder_record(command)
        blob = self._blob()
        if blob is None:
            # No workspace (so no datastore) yet: lock this machine; the lease is taken once
            # the workspace exists and the state is first written.
            with kernel_lock(self.state_dir, command, timeout, self._holder):
                self._wants_lease = True
                try:
                    self.reload()
                    yield str(self._holder["id"])
                finally:
                    self._release()
            return
        self._ensure_blob(blob)
        self._take_lease(blob, time.monotonic() + timeout)
        try:
            self.reload()  # what the previous holder left
            yield str(self._holder["id"])
        finally:
            self._release()

    def _release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
            self._renewer = None
        lease, self._lease, self._wants_lease = self._lease, None, False
        if lease is not None:
            with suppress(Exception):  # an unreleased lease expires by itself
                lease.release()

    def force_unlock(self, lock_id: str) -> tuple[dict[str, Any], str]:
        from amlctl.providers.azure.sdk import blob_module

        blob = self._blob()
        holder = self.holder() if blob is not None else None
        if holder is None:
            raise UsageError(f"the stack is not locked ({self.location}); a lease also "
                             f"expires by itself {self.lease_seconds} s after its holder died")
        if holder.get("id") != lock_id:
            raise UsageError(f"lock id {lock_id!r} does not match the current lock "
                             f"{holder.get('id')!r}")
        blob_module().BlobLeaseClient(blob).break_lease(lease_break_period=0)
        return holder, f"broke the lease on {self.location}"

    def close(self) -> None:
        self._release()
