"""An upload target listed past one page of results, against Azurite.

The service returns at most 5,000 blobs per listing request and a continuation marker;
`BlobFileStore.list_files` must follow it. The blobs are written in parallel (Azurite takes
about 5 ms per request). The page parser is also given pages as the service writes them in
cases Azurite does not produce (names it sends encoded).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote

from fake_service import FakeAzure

from amlctl.providers.azure.blobfiles import SHA_KEY, BlobFileStore, _parse_page

COUNT = 5_123  # more than one page of 5,000


def test_listing_follows_pages_past_5000_blobs(workspace: Any, fake: FakeAzure) -> None:
    ds = workspace.get_default_datastore()
    container = ds.blob_service.get_container_client(ds.container_name)
    digest = hashlib.sha256(b"x").hexdigest()
    names = [f"many/f{i:05}.txt" for i in range(COUNT)]
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda n: container.upload_blob(n, b"x", metadata={SHA_KEY: digest}),
                      names))
    container.upload_blob("other/outside.txt", b"y")  # another prefix: not listed
    pages = container.list_blobs(name_starts_with="many/").by_page()
    assert len(list(next(pages))) == 5_000  # the service really pages
    listing = BlobFileStore(container, "many").list_files()
    assert len(listing) == COUNT
    assert sorted(listing) == sorted(n.removeprefix("many/") for n in names)
    assert {(f.size, f.sha256) for f in listing.values()} == {(1, digest)}


def test_listing_reads_names_sizes_and_hashes_as_written(workspace: Any, fake: FakeAzure) -> None:
    """The listing is parsed from the service's XML: odd names (spaces, %, &, <, unicode)
    and the prefix come back exactly; blobs without amlctl's hash list with None."""
    ds = workspace.get_default_datastore()
    container = ds.blob_service.get_container_client(ds.container_name)
    odd = {"a b/c%20d.txt": b"1", "x&y<z>.bin": b"22", "dir/\u00e9t\u00e9 \u2603.txt": b"333"}
    for name, data in odd.items():
        container.upload_blob(f"odd dir/{name}", data,
                              metadata={SHA_KEY: hashlib.sha256(data).hexdigest()})
    container.upload_blob("odd dir/foreign.txt", b"4444")  # not written by amlctl
    container.upload_blob("odd dirx/next.txt", b"5")  # shares the prefix's letters only
    listing = BlobFileStore(container, "odd dir").list_files()
    assert {p: (f.size, f.sha256) for p, f in listing.items()} == {
        **{n: (len(d), hashlib.sha256(d).hexdigest()) for n, d in odd.items()},
        "foreign.txt": (4, None),
    }


def test_metadata_keys_of_any_case_hold_the_hash(workspace: Any, fake: FakeAzure) -> None:
    """The service compares metadata keys case-insensitively and lists them as written: a
    hash written under another casing (another client) is still read."""
    ds = workspace.get_default_datastore()
    container = ds.blob_service.get_container_client(ds.container_name)
    digests = {name: hashlib.sha256(name.encode()).hexdigest() for name in ("a", "b", "c")}
    for name, key in (("a", SHA_KEY), ("b", SHA_KEY.upper()), ("c", "Amlctl_Sha256")):
        container.upload_blob(f"case/{name}", name.encode(), metadata={key: digests[name]})
    assert BlobFileStore(container, "case").list_files() == {
        name: (1, digest) for name, digest in digests.items()}


PAGE = (b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults ServiceEndpoint="https://'
        b'acct.blob.core.windows.net/" ContainerName="c"><Prefix>p/</Prefix><MaxResults>5000'
        b"</MaxResults><Blobs>%s</Blobs>%s</EnumerationResults>")


def blob(name: bytes, size: int, metadata: bytes = b"", encoded: bool = False) -> bytes:
    """One <Blob> of a listing page as the service writes it."""
    attribute = b' Encoded="true"' if encoded else b""
    return (b"<Blob><Name%s>%s</Name><Properties><Creation-Time>Mon, 30 Nov 2026 10:00:00 GMT"
            b"</Creation-Time><Content-Length>%d</Content-Length><BlobType>BlockBlob</BlobType>"
            b"</Properties>%s</Blob>"
            % (attribute, name, size, b"<Metadata>%s</Metadata>" % metadata if metadata else b""))


def test_a_page_is_read_with_encoded_names_and_its_marker() -> None:
    """A name the service sends percent-encoded (it holds characters XML cannot) comes back
    decoded; entities are unescaped; a blob without metadata has no hash; metadata keys named
    like the page's own elements change nothing; the marker is the root's NextMarker."""
    odd = "p/bad\x01\ufffe name%.txt"
    body = PAGE % (
        blob(quote(odd).encode(), 7, b"<amlctl_sha256>aa</amlctl_sha256>", encoded=True)
        + blob(b"p/x&amp;y&lt;z&#x2603;.bin", 12, b"<Blob>1</Blob><Name>n</Name>"
               b"<NextMarker>m</NextMarker><AMLCTL_SHA256>bb</AMLCTL_SHA256>")
        + blob(b"p/plain", 0),
        b"<NextMarker>2!96!MDAw&amp;X</NextMarker>")
    assert _parse_page(body) == ([(odd, 7, "aa"), ("p/x&y<z\u2603.bin", 12, "bb"),
                                  ("p/plain", 0, None)], "2!96!MDAw&X")
    assert _parse_page(PAGE % (b"", b"<NextMarker />")) == ([], "")
    assert _parse_page(PAGE % (blob(b"p/last", 3), b"")) == ([("p/last", 3, None)], "")
