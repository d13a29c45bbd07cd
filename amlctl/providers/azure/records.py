"""amlctl's own records inside the workspace, for objects Azure ML cannot tag.

Computes and the workspace carry the `amlctl.stack` tag, but datastores registered through the
SDK and uploads (a folder of blobs) have nowhere to keep an owner. Their records live as small
JSON blobs under `.amlctl/objects/<kind>/<name>.json` in the workspace's default blob
container, so every machine running amlctl (a laptop, CI) sees the same ownership.
"""

from __future__ import annotations

import json
from typing import Any

from amlctl.providers.azure.retry import DEFAULT_POLICY, AzureCallError, RetryPolicy, call

PREFIX = ".amlctl/objects/"


class Records:
    """Records of one workspace; `container` is the default datastore's ContainerClient."""

    def __init__(self, container: Any, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.container = container
        self.policy = policy

    def list(self, kind: str) -> dict[str, dict[str, Any]]:
        """name -> record of every object of `kind` amlctl recorded."""
        prefix = f"{PREFIX}{kind}/"

        def read_all() -> dict[str, dict[str, Any]]:
            out = {}
            for blob in self.container.list_blobs(name_starts_with=prefix):
                name = blob.name[len(prefix):]
                if not name.endswith(".json") or "/" in name:
                    continue
                data = self.container.download_blob(blob.name).readall()
                out[name[: -len(".json")]] = json.loads(data)
            return out

        return call(f"reading amlctl records of {kind}s", read_all, self.policy)

    def put(self, kind: str, name: str, record: dict[str, Any]) -> None:
        """Write (or overwrite) one record; a single PUT, so readers see old or new, never
        half."""
        data = json.dumps(record, sort_keys=True).encode()
        call(f"recording {kind}.{name}", lambda: self.container.upload_blob(
            f"{PREFIX}{kind}/{name}.json", data, overwrite=True), self.policy)

    def delete(self, kind: str, name: str) -> None:
        """Remove a record; absent is fine."""
        try:
            call(f"forgetting {kind}.{name}", lambda: self.container.delete_blob(
                f"{PREFIX}{kind}/{name}.json"), self.policy)
        except AzureCallError as e:
            if e.status != 404:
                raise
