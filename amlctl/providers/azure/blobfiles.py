"""An upload target in blob storage: the files under one prefix of a datastore's container.

Each blob carries the sha256 of its bytes in metadata (`amlctl_sha256`), written in the same
request that makes the blob visible, so a listing alone tells what is there. Content-MD5 is no
substitute: the service keeps one only for single-request uploads. Files up to
`single_put_bytes` go in one request; larger ones as blocks committed with one block list, read
and hashed as they stream (memory stays at one block).
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from amlctl.providers.azure.records import PREFIX as RECORDS_PREFIX
from amlctl.providers.azure.retry import DEFAULT_POLICY, AzureCallError, RetryPolicy, call
from amlctl.providers.azure.state import PREFIX as STATE_PREFIX
from amlctl.uploads.model import RemoteFile
from amlctl.uploads.store import check_relpath

SHA_KEY = "amlctl_sha256"


class BlobFileStore:
    """Files under `prefix` in a container (see amlctl.uploads.store for the contract)."""

    def __init__(self, container: Any, prefix: str, policy: RetryPolicy = DEFAULT_POLICY,
                 single_put_bytes: int = 32 * 1024 * 1024,
                 block_bytes: int = 8 * 1024 * 1024) -> None:
        self.container = container
        self.prefix = prefix.strip("/")
        self.policy = policy
        self.single_put_bytes = single_put_bytes
        self.block_bytes = block_bytes

    def _name(self, relpath: str) -> str:
        check_relpath(relpath)
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def list_files(self) -> dict[str, RemoteFile]:
        """relpath -> size and sha256 (None for blobs amlctl did not write)."""
        start = f"{self.prefix}/" if self.prefix else ""

        def listing() -> dict[str, RemoteFile]:
            out = {}
            for blob in self.container.list_blobs(name_starts_with=start or None,
                                                  include=["metadata"]):
                # amlctl's own records and state share the default container: never files
                if blob.name.startswith((RECORDS_PREFIX, STATE_PREFIX)) or blob.name.endswith("/"):
                    continue
                out[blob.name[len(start):]] = RemoteFile(int(blob.size),
                                                         (blob.metadata or {}).get(SHA_KEY))
            return out

        return call(f"listing {self.container.container_name}/{start}", listing, self.policy)

    def put_file(self, src: Path, relpath: str) -> RemoteFile:
        """Upload src as relpath; the blob appears whole, with its sha256, or not at all."""
        name = self._name(relpath)
        blob = self.container.get_blob_client(name)
        with open(src, "rb") as f:
            first = f.read(self.single_put_bytes + 1)
            digest = hashlib.sha256(first)
            if len(first) <= self.single_put_bytes:
                meta = {SHA_KEY: digest.hexdigest()}
                call(f"uploading {name}", lambda: blob.upload_blob(
                    first, overwrite=True, metadata=meta), self.policy)
                return RemoteFile(len(first), meta[SHA_KEY])
            return self._put_blocks(blob, name, f, first, digest)

    def _put_blocks(self, blob: Any, name: str, f: Any, first: bytes,
                    digest: Any) -> RemoteFile:
        from azureml._vendor.azure_storage.blob import BlobBlock

        ids: list[str] = []
        size = 0
        pending = first
        while True:
            for offset in range(0, len(pending), self.block_bytes):
                chunk = pending[offset:offset + self.block_bytes]
                block_id = base64.b64encode(f"amlctl-{len(ids):08d}".encode()).decode()
                call(f"uploading {name} (block {len(ids) + 1})",
                     lambda c=chunk, b=block_id: blob.stage_block(b, c), self.policy)
                ids.append(block_id)
                size += len(chunk)
            pending = f.read(self.block_bytes)
            if not pending:
                break
            digest.update(pending)
        meta = {SHA_KEY: digest.hexdigest()}
        call(f"committing {name}", lambda: blob.commit_block_list(
            [BlobBlock(block_id=i) for i in ids], metadata=meta), self.policy)
        return RemoteFile(size, meta[SHA_KEY])

    def delete_file(self, relpath: str) -> None:
        """Delete relpath; absent is fine."""
        name = self._name(relpath)
        try:
            call(f"deleting {name}", lambda: self.container.delete_blob(name), self.policy)
        except AzureCallError as e:
            if e.status != 404:
                raise
