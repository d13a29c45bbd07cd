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
