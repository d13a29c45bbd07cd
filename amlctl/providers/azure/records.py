"""amlctl's own records inside the workspace, for objects Azure ML cannot tag.

Computes and the workspace carry the `amlctl.stack` tag, but datastores registered through the
SDK and uploads (a folder of blobs) have nowhere to keep an owner. Their records live as small
JSON blobs under `.amlctl/objects/<kind>/<name>.json` in the workspace's default blob
container, so every machine running amlctl (a laptop, CI) sees the same ownership.

Each record is also copied into its blob's metadata, so one listing of `.amlctl/objects/`
with metadata reads every record of every kind (a plan makes one request for them, not one
per object); a record written before that is downloaded.
"""

from __future__ import annotations

import base64
import json
import threading
from typing import Any

from amlctl.providers.azure.retry import DEFAULT_POLICY, AzureCallError, RetryPolicy, call

PREFIX = ".amlctl/objects/"
META_KEY = "amlctlrecord"  # metadata names must be C# identifiers


class Records:
    """Records of one workspace; `container` is the default datastore's ContainerClient.

    The first `list` reads them all in one listing and keeps them; `put` and `delete` keep
    that copy current, so one instance serves a whole command (from several threads)."""

    def __init__(self, container: Any, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.container = container
        self.policy = policy
        self._lock = threading.Lock()
        self._all: dict[str, dict[str, dict[str, Any]]] | None = None  # kind -> name -> record

    def list(self, kind: str) -> dict[str, dict[str, Any]]:
        """name -> record of every object of `kind` amlctl recorded."""
        with self._lock:
            if self._all is None:
                self._all = call("reading amlctl records", self._read_all, self.policy)
            return dict(self._all.get(kind, {}))

    def _read_all(self) -> dict[str, dict[str, dict[str, Any]]]:
        out: dict[str, dict[str, dict[str, Any]]] = {}
        for blob in self.container.list_blobs(name_starts_with=PREFIX, include=["metadata"]):
            kind, _, name = blob.name[len(PREFIX):].partition("/")
            if not name.endswith(".json") or "/" in name:
                continue
            encoded = (blob.metadata or {}).get(META_KEY)
            data = _decode(encoded) if encoded else \
                json.loads(self.container.download_blob(blob.name).readall())
            out.setdefault(kind, {})[name[: -len(".json")]] = data
        return out

    def put(self, kind: str, name: str, record: dict[str, Any]) -> None:
        """Write (or overwrite) one record; a single PUT, so readers see old or new, never
        half."""
        data = json.dumps(record, sort_keys=True).encode()
        call(f"recording {kind}.{name}", lambda: self.container.upload_blob(
            f"{PREFIX}{kind}/{name}.json", data, overwrite=True,
            metadata={META_KEY: _encode(record)}), self.policy)
        with self._lock:
            if self._all is not None:
                self._all.setdefault(kind, {})[name] = dict(record)

    def delete(self, kind: str, name: str) -> None:
        """Remove a record; absent is fine."""
        try:
            call(f"forgetting {kind}.{name}", lambda: self.container.delete_blob(
                f"{PREFIX}{kind}/{name}.json"), self.policy)
        except AzureCallError as e:
            if e.status != 404:
                raise
        with self._lock:
            if self._all is not None:
                self._all.get(kind, {}).pop(name, None)


def _encode(record: dict[str, Any]) -> str:
    """A record as a metadata value (ASCII, no characters a header cannot hold)."""
    return base64.urlsafe_b64encode(json.dumps(record, sort_keys=True).encode()).decode()


def _decode(value: str) -> dict[str, Any]:
    return dict(json.loads(base64.urlsafe_b64decode(value.encode())))
