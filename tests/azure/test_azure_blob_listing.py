"""An upload target listed past one page of results, against Azurite.

The service returns at most 5,000 blobs per listing request and a continuation marker;
`BlobFileStore.list_files` must follow it. The blobs are written in parallel (Azurite takes
about 5 ms per request).
"""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fake_service import FakeAzure

from amlctl.providers.azure.blobfiles import SHA_KEY, BlobFileStore

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
