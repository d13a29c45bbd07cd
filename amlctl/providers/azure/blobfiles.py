"""An upload target in blob storage: the files under one prefix of a datastore's container.

Each blob carries the sha256 of its bytes in metadata (`amlctl_sha256`), written in the same
request that makes the blob visible, so a listing alone tells what is there. Content-MD5 is no
substitute: the service keeps one only for single-request uploads. Files up to
`single_put_bytes` (64 MiB, the SDK's own single-put limit) go in one request; larger ones as
blocks committed with one block list, read and hashed as they stream (memory stays at one
block). One request, not blocks, up to 64 MiB: Azurite takes about 3x as long to stage the
same bytes as blocks, and blocks staged side by side do not go faster there.

The listing is read straight from the service's XML pages (one request per 5,000 blobs):
the SDK's model deserializer took ~0.2 ms per blob, most of a no-op re-sync's time. The next
page is asked for as soon as a page has arrived (its continuation marker is the last element)
and the page is parsed while the service prepares the next one.

Single-request puts and the listing are requests built here and sent through a twin of the
container client (same URL, credential and API version: the storage client's own pipeline
signs them) over `transport.PoolTransport`: the SDK's BlobClient.upload_blob and the requests
transport under it cost ~1 ms of client CPU per small file, as much as the service spends
storing it. Blocks and deletes go through the container client as given.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit, urlunsplit
from xml.etree import ElementTree

from amlctl.providers.azure.records import PREFIX as RECORDS_PREFIX
from amlctl.providers.azure.retry import DEFAULT_POLICY, AzureCallError, RetryPolicy, call
from amlctl.providers.azure.state import PREFIX as STATE_PREFIX
from amlctl.providers.azure.transport import twin
from amlctl.uploads.model import RemoteFile
from amlctl.uploads.store import check_relpath

SHA_KEY = "amlctl_sha256"


class BlobFileStore:
    """Files under `prefix` in a container (see amlctl.uploads.store for the contract)."""

    def __init__(self, container: Any, prefix: str, policy: RetryPolicy = DEFAULT_POLICY,
                 single_put_bytes: int = 64 * 1024 * 1024,
                 block_bytes: int = 4 * 1024 * 1024) -> None:
        self.container = container
        self.prefix = prefix.strip("/")
        self.policy = policy
        self.single_put_bytes = single_put_bytes
        self.block_bytes = block_bytes
        self._fast = twin(container)  # the requests built here (see module doc)
        scheme, host, path, query, _ = urlsplit(self._fast.url)
        self._base = (scheme, host, path.rstrip("/"), parse_qsl(query))

    def _name(self, relpath: str) -> str:
        check_relpath(relpath)
        return f"{self.prefix}/{relpath}" if self.prefix else relpath

    def list_files(self) -> dict[str, RemoteFile]:
        """relpath -> size and sha256 (None for blobs amlctl did not write)."""
        start = f"{self.prefix}/" if self.prefix else ""

        def listing() -> dict[str, RemoteFile]:
            out = {}
            for name, size, sha in self._blobs(start):
                # amlctl's own records and state share the default container: never files
                if name.startswith((RECORDS_PREFIX, STATE_PREFIX)) or name.endswith("/"):
                    continue
                out[name[len(start):]] = RemoteFile(size, sha)
            return out

        return call(f"listing {self.container.container_name}/{start}", listing, self.policy)

    def _blobs(self, start: str) -> Iterator[tuple[str, int, str | None]]:
        """(name, size, sha256 or None) of each blob under start, page by page."""
        body = self._page(start, "")
        with ThreadPoolExecutor(max_workers=1) as ahead:
            while True:
                marker = _next_marker(body)
                following = ahead.submit(self._page, start, marker) if marker else None
                entries, real = _parse_page(body)
                del body
                if real != marker:  # the tail misread (not seen): ask again, from the page
                    if following is not None:
                        following.cancel()
                    following = ahead.submit(self._page, start, real) if real else None
                yield from entries
                if following is None:
                    return
                body = following.result()

    def _page(self, start: str, marker: str) -> bytes:
        """One List Blobs page (XML bytes) of the blobs under start, from marker on."""
        params = [*self._base[3], ("restype", "container"), ("comp", "list"),
                  ("include", "metadata"), ("maxresults", "5000")]
        params += [("prefix", start)] if start else []
        params += [("marker", marker)] if marker else []
        # %20, not "+", for spaces: the shared-key signature reads the query decoded
        return self._send("GET", self._url("", params), {"Accept": "application/xml"}, None,
                          200)

    def _url(self, name: str, params: list[tuple[str, str]]) -> str:
        scheme, host, path, _ = self._base
        path = f"{path}/{quote(name, safe='/~')}" if name else path
        return urlunsplit((scheme, host, path, urlencode(params, quote_via=quote), ""))

    def _send(self, method: str, url: str, headers: dict[str, str], data: bytes | None,
              expect: int) -> bytes:
        """One request through the twin client's pipeline; its body, or HttpResponseError."""
        from azure.core.exceptions import HttpResponseError
        from azure.core.pipeline.transport import HttpRequest

        # both blob clients (azureml-core's vendored one and azure-storage-blob) keep their
        # configured pipeline here: it signs the request with the client's credential
        request = HttpRequest(method, url, headers={
            "x-ms-version": self._fast.api_version, **headers}, data=data)
        # stream=True: the pipeline would otherwise parse an XML body itself, before us (see
        # transport); the body is read whole right here either way
        response = self._fast._pipeline.run(request, stream=True).http_response
        body = response.body()
        if response.status_code != expect:
            raise HttpResponseError(response=response)
        return body

    def put_file(self, src: Path, relpath: str) -> RemoteFile:
        """Upload src as relpath; the blob appears whole, with its sha256, or not at all."""
        name = self._name(relpath)
        with open(src, "rb") as f:
            # a file known to be large never buffers more than a block; one that grew since
            # its stat, past the single-put size, goes on as blocks from what was read
            size = os.fstat(f.fileno()).st_size
            if size <= self.single_put_bytes:
                # read(n) allocates n bytes first: ask for the stat's size (+1 to see growth),
                # not for the single-put limit (64 MiB a call cost ~0.15 ms a small file)
                first = f.read(size + 1)
                if len(first) > size:
                    first += f.read(self.single_put_bytes + 1 - len(first))
            else:
                first = f.read(self.block_bytes)
            digest = hashlib.sha256(first)
            if size <= self.single_put_bytes and len(first) <= self.single_put_bytes:
                sha = digest.hexdigest()
                url = self._url(name, self._base[3])
                # Put Blob: the blob appears whole, its hash in the same request
                headers = {"x-ms-blob-type": "BlockBlob", f"x-ms-meta-{SHA_KEY}": sha,
                           "Content-Type": "application/octet-stream",
                           "Content-Length": str(len(first))}
                call(f"uploading {name}", lambda data=first: self._send(
                    "PUT", url, headers, data, 201), self.policy)
                return RemoteFile(len(first), sha)
            held = [first]
            del first  # the blocks hold one buffer at a time: this frame must not keep one
            return self._put_blocks(self.container.get_blob_client(name), name, f, held,
                                    digest)

    def _put_blocks(self, blob: Any, name: str, f: Any, held: list[bytes],
                    digest: Any) -> RemoteFile:
        ids: list[str] = []
        size = 0
        pending = held.pop()
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
        # plain ids (committed as "latest"): both the SDK v1's vendored storage client and
        # azure-storage-blob (SDK v2) take them; each rejects the other's BlobBlock class
        call(f"committing {name}", lambda: blob.commit_block_list(ids, metadata=meta),
             self.policy)
        return RemoteFile(size, meta[SHA_KEY])

    def delete_file(self, relpath: str) -> None:
        """Delete relpath; absent is fine."""
        name = self._name(relpath)
        try:
            call(f"deleting {name}", lambda: self.container.delete_blob(name), self.policy)
        except AzureCallError as e:
            if e.status != 404:
                raise


def _parse_page(body: bytes) -> tuple[list[tuple[str, int, str | None]], str]:
    """The blobs of a List Blobs page and its continuation marker.

    Each <Blob> is read and cleared as soon as it ends: the page never stands as a tree of
    100,000 elements, which the garbage collector would walk over and over while it grows
    (in a process holding the azureml SDK, 0.14 s a 5,000-blob page instead of 0.05 s).
    Only end events, read by position (measured: 38 ms a 5,000-blob page, against 53 ms
    with start events kept to count depth and 62 ms with expat handlers in Python). A
    listing's <Blob> starts with its <Name>; a metadata value is text, so a metadata key
    named Blob (or Name, NextMarker) has no child and is never taken for one. The marker is
    read from the root's own children once the page is parsed.
    """
    entries = []
    events = ElementTree.iterparse(io.BytesIO(body), ("end",))
    for _, element in events:
        if element.tag == "Blob" and len(element) and element[0].tag == "Name":
            entries.append(_blob_entry(element))
            element.clear()
    return entries, events.root.findtext("NextMarker") or ""  # type: ignore[attr-defined]


def _next_marker(body: bytes) -> str:
    """The continuation marker of a List Blobs page, read from its tail: NextMarker is the
    last element of the page ("" on the last page). Text cannot hold a raw "<", so the last
    "<NextMarker" is the element itself."""
    at = body.rfind(b"<NextMarker")
    if at < 0:
        return ""
    end = body.find(b"</EnumerationResults>", at)
    try:
        return ElementTree.fromstring(body[at:end if end >= 0 else len(body)]).text or ""
    except ElementTree.ParseError:
        return ""  # the full parse of the page then finds the real one


def _blob_entry(blob: ElementTree.Element) -> tuple[str, int, str | None]:
    """Name, size and amlctl's sha256 of one <Blob> of a listing page (its first child is
    its <Name>); children read in one pass, not by path (ElementPath was ~1/4 of the parse)."""
    name_el = blob[0]
    name = name_el.text or ""
    if name_el.get("Encoded") == "true":  # names with XML-invalid chars
        name = unquote(name)
    size = 0
    sha = None
    for part in blob:
        if part.tag == "Properties":
            for prop in part:
                if prop.tag == "Content-Length":
                    size = int(prop.text or 0)
                    break
        elif part.tag == "Metadata":
            for item in part:  # metadata keys compare case-insensitively on the service
                if item.tag.lower() == SHA_KEY:
                    sha = item.text
    return name, size, sha
