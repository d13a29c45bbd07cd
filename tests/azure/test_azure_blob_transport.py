"""Blob puts and listings sent by `BlobFileStore` itself, over its pooled http.client transport.

Against Azurite (the real emulator, over HTTPS with the tests' certificate): what the store
writes reads back through the SDK's own client exactly as a blob written by the SDK (so blobs
uploaded by earlier amlctl versions, through `upload_blob`, compare the same and are not sent
again); the proxy and CA settings taken from the environment, through a loopback tunnelling
proxy. Without a service: retries and errors of an unreachable endpoint, and the listing's
continuation marker read from a page's tail.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import socket
import threading
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
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


class ConnectProxy:
    """A loopback HTTP proxy that only tunnels (CONNECT), as corporate proxies do for HTTPS;
    it records each request line with its Proxy-Authorization. Its upstream connections
    resolve Azure names through the tests' routing, to Azurite."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.seen: list[tuple[str, str | None]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def __enter__(self) -> ConnectProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.listener.close()

    def _serve(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        head = b""
        while b"\r\n\r\n" not in head:
            head += client.recv(4096)
        line, *fields = head.split(b"\r\n\r\n")[0].decode().split("\r\n")
        auth = next((f.split(":", 1)[1].strip() for f in fields
                     if f.lower().startswith("proxy-authorization:")), None)
        self.seen.append((line.rsplit(" ", 1)[0], auth))
        host, port = line.split(" ")[1].rsplit(":", 1)
        upstream = socket.create_connection((host, int(port)))
        client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")

        def pump(src: socket.socket, dst: socket.socket) -> None:
            with contextlib.suppress(OSError):
                while data := src.recv(65536):
                    dst.sendall(data)
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        threading.Thread(target=pump, args=(upstream, client), daemon=True).start()
        pump(client, upstream)


def test_proxy_and_ca_settings_come_from_the_environment(
        workspace: Any, fake: FakeAzure, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """HTTPS_PROXY (with its credentials), NO_PROXY and REQUESTS_CA_BUNDLE as the SDK's
    requests transport reads them: puts and listings go through one tunnel of the proxy,
    NO_PROXY goes direct, a CA bundle without the service's issuer fails the TLS check; a
    SOCKS proxy leaves the store on the client's own transport."""
    from azure.storage.blob import ContainerClient

    ds = workspace.get_default_datastore()
    container = ds.blob_service.get_container_client(ds.container_name)
    host = urlsplit(container.url).hostname
    (tmp_path / "f").write_bytes(b"via proxy")
    digest = hashlib.sha256(b"via proxy").hexdigest()
    for name in ("NO_PROXY", "no_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    with ConnectProxy() as proxy:
        monkeypatch.setenv("HTTPS_PROXY", f"http://user:se%40cret@127.0.0.1:{proxy.port}")
        store = BlobFileStore(container, "proxied")
        assert store.put_file(tmp_path / "f", "f") == (9, digest)
        assert store.list_files() == {"f": (9, digest)}
        token = base64.b64encode(b"user:se@cret").decode()
        assert proxy.seen == [(f"CONNECT {host}:443", f"Basic {token}")]
        monkeypatch.setenv("NO_PROXY", ".core.windows.net")
        assert BlobFileStore(container, "proxied").list_files() == {"f": (9, digest)}
        assert len(proxy.seen) == 1
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", requests.certs.where())  # public CAs only
    with pytest.raises(AzureCallError, match=r"(?i)certificate verify failed"):
        BlobFileStore(container, "proxied", RetryPolicy(attempts=1)).list_files()
    monkeypatch.setenv("HTTPS_PROXY", "socks5://proxy.example:1080")
    monkeypatch.delenv("NO_PROXY")
    container = ContainerClient("https://acct.blob.core.windows.net", "c",
                                credential={"account_name": "acct", "account_key": "a2V5"})
    assert transport.twin(container) is container


def test_a_connection_the_service_closed_while_idle_is_replaced() -> None:
    """A keep-alive connection the server drops while it sits in the pool (an idle timeout)
    costs nothing: the request is sent again on a new connection, once; a connection that
    fails on its first request is an error (ServiceResponseError, retried by `call`)."""
    from azure.core.exceptions import ServiceResponseError
    from azure.core.pipeline.transport import HttpRequest

    connections: list[int] = []
    received: list[bytes] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive: the client pools the connection

        def do_PUT(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            if self.path == "/broken":
                self.close_connection = True  # no answer at all
                return
            self.send_response(201)
            self.send_header("Content-Length", "0")
            self.end_headers()
            self.close_connection = True  # as an idle timeout would, unannounced

        def setup(self) -> None:
            super().setup()
            connections.append(1)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with transport.PoolTransport() as pool:
            for body in (b"one", b"two"):
                response = pool.send(HttpRequest("PUT", f"{base}/b", data=body))
                assert response.status_code == 201
            assert (received, len(connections)) == ([b"one", b"two"], 2)
            with pytest.raises(ServiceResponseError):
                pool.send(HttpRequest("PUT", f"{base}/broken", data=b"three"))
            assert (received[-1], len(connections)) == (b"three", 3)
    finally:
        server.shutdown()
        server.server_close()


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
