"""Blob puts and listings sent by `BlobFileStore` itself, over its urllib3 pool transport.

Against Azurite (the real emulator, over HTTPS with the tests' certificate): what the store
writes reads back through the SDK's own client exactly as a blob written by the SDK (so blobs
uploaded by earlier amlctl versions, through `upload_blob`, compare the same and are not sent
again). Without a service: retries and errors of an unreachable endpoint, the proxy and CA
settings taken from the environment, and the listing's continuation marker read from a page's
tail.
"""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path
from typing import Any

import pytest
import urllib3
from fake_service import FakeAzure

from amlctl.providers.azure import transport
from amlctl.providers.azure.blobfiles import SHA_KEY, BlobFileStore, _next_marker
from amlctl.providers.azure.retry import AzureCallError, RetryPolicy
from amlctl.uploads import plan_sync

ODD = {"a b/c%20d.txt": b"1", "x&y<z>+~.bin": b"22", "dir/\u00e9t\u00e9 \u2603.txt": b"333",
       "q?#'.txt": b"4444"}


def test_puts_read_back_as_the_sdks_own(workspace: Any, fake: FakeAzure, tmp_path: Path) -> None:
    """Odd names, content, sha256 metadata and content type as the SDK itself writes them; a
    tree half uploaded by the SDK's upload_blob (as amlctl did before), half by the store,
    plans with nothing to send."""
    ds = workspace.get_default_datastore()
    container = ds.blob_service.get_container_client(ds.container_name)
    src = tmp_path / "src"
    store = BlobFileStore(container, "compat")
    for index, (name, data) in enumerate(sorted(ODD.items())):
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        (src / name).write_bytes(data)
        digest = hashlib.sha256(data).hexdigest()
        if index % 2:
            container.upload_blob(f"compat/{name}", data, overwrite=True,
                                  metadata={SHA_KEY: digest})
        else:
            assert store.put_file(src / name, name) == (len(data), digest)
    for name, data in ODD.items():
        blob = container.get_blob_client(f"compat/{name}")
        properties = blob.get_blob_properties()
        assert blob.download_blob().readall() == data
        assert properties.metadata == {SHA_KEY: hashlib.sha256(data).hexdigest()}
        assert properties.content_settings.content_type == "application/octet-stream"
    plan = plan_sync(src, BlobFileStore(container, "compat").list_files())
    assert (plan.add, plan.change, plan.unchanged) == ((), (), len(ODD))


def test_metadata_named_like_listing_elements_is_not_a_blob(workspace: Any,
                                                             fake: FakeAzure) -> None:
    """The page is read by element depth: metadata keys `Blob`, `NextMarker` or `Name`
    (another tool's) neither add blobs nor end the listing."""
    ds = workspace.get_default_datastore()
    container = ds.blob_service.get_container_client(ds.container_name)
    digest = hashlib.sha256(b"ab").hexdigest()
    for name in ("a", "b"):
        container.upload_blob(f"meta/{name}", b"ab", metadata={
            "Blob": "x", "NextMarker": "meta/zz", "Name": "other", SHA_KEY: digest})
    assert BlobFileStore(container, "meta").list_files() == {
        "a": (2, digest), "b": (2, digest)}


def test_an_unreachable_service_is_retried_then_reported(tmp_path: Path) -> None:
    """A refused connection is transient: retried per amlctl's policy, then one clear error."""
    from azure.storage.blob import ContainerClient

    with socket.socket() as sock:  # a loopback port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    container = ContainerClient(f"http://127.0.0.1:{port}/acct", "c", retry_total=0,
                                credential={"account_name": "acct", "account_key": "a2V5"})
    waits: list[float] = []
    store = BlobFileStore(container, "p", RetryPolicy(attempts=3, sleep=waits.append))
    (tmp_path / "f").write_bytes(b"x")
    for action in (store.list_files, lambda: store.put_file(tmp_path / "f", "f")):
        waits.clear()
        with pytest.raises(AzureCallError, match=r"after 3 attempts.*network"):
            action()
        assert len(waits) == 2


def test_proxy_and_ca_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                         tmp_path: Path) -> None:
    """HTTPS_PROXY (with its credentials), NO_PROXY and REQUESTS_CA_BUNDLE as the SDK's
    requests transport reads them; a SOCKS proxy leaves the store on the client's own."""
    from azure.storage.blob import ContainerClient

    bundle = tmp_path / "ca.pem"
    bundle.write_text("")
    origin = "https://acct.blob.core.windows.net"
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.example:3128")
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(bundle))
    proxied = transport._manager_for(origin, 4)
    assert isinstance(proxied, urllib3.ProxyManager)
    assert proxied.proxy is not None and proxied.proxy.host == "proxy.example"
    assert proxied.proxy_headers["proxy-authorization"].startswith("Basic ")
    assert proxied.connection_pool_kw["ca_certs"] == str(bundle)
    monkeypatch.setenv("NO_PROXY", ".core.windows.net")
    direct = transport._manager_for(origin, 4)
    assert not isinstance(direct, urllib3.ProxyManager)
    assert direct.connection_pool_kw["ca_certs"] == str(bundle)
    monkeypatch.delenv("NO_PROXY")
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.example:1080")
    container = ContainerClient(origin, "c", credential={"account_name": "acct",
                                                         "account_key": "a2V5"})
    assert transport.twin(container) is container


@pytest.mark.parametrize(("tail", "marker"), [
    (b"<NextMarker>2!48!a&amp;b&lt;c&#x2603;</NextMarker></EnumerationResults>",
     "2!48!a&b<c\u2603"),
    (b"<NextMarker /></EnumerationResults>", ""),
    (b"<NextMarker/></EnumerationResults>", ""),
    (b"<Blobs /></EnumerationResults>", ""),
])
def test_the_continuation_marker_is_read_from_the_page_tail(tail: bytes, marker: str) -> None:
    """Escaped text unescaped, an empty or missing marker is the last page."""
    page = (b'<?xml version="1.0" encoding="utf-8"?><EnumerationResults><Blobs><Blob><Name>'
            b"NextMarker&lt;x</Name></Blob></Blobs>" + tail)
    assert _next_marker(page) == marker
