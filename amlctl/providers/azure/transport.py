"""A lean HTTP transport for the blob requests amlctl builds itself (Put Blob, List Blobs).

The storage clients send through azure-core's RequestsTransport: a requests Session that, on
every request, re-reads proxy and CA settings from the environment (the whole of os.environ,
twice), merges cookies and hooks, then hands over to urllib3. For a sync of thousands of small
files that is most of the client's CPU (measured here: ~0.8 ms per small Put Blob through it).
`PoolTransport` keeps everything that matters in the storage client's own pipeline
(credential, headers, request ids, logging: see `twin`) and sends over keep-alive
`http.client` connections, pooled per origin, taking the environment's decisions once per
origin with requests' own functions, so proxies, NO_PROXY and REQUESTS_CA_BUNDLE behave as
with the SDK's transport. Plain http.client, not urllib3 under it: urllib3's pool, header and
response wrappers cost ~0.15 ms of client CPU a request (2,000 small puts: 1.05 s of client
CPU through urllib3, 0.75 s through this), CPU taken from the service when both share a
machine (an emulator, a small VM).

Each connection sends TCP_NODELAY, as urllib3 does, and writes a small request's headers and
body in one send: two writes would be two segments each way for the service to read.

It serves only plain, idempotent requests: a bytes body or none, the response read whole; a
request that finds its pooled connection closed by the service (an idle keep-alive timed out)
is sent once more on a new connection. Anything else (streamed uploads or downloads,
multipart) stays on the client's own transport. A request sent with stream=True is read whole
too: the flag then only keeps the pipeline's ContentDecodePolicy from parsing an XML body the
caller parses itself (a listing page parsed twice cost ~0.15 s).
"""

from __future__ import annotations

import base64
import http.client
import os
import socket
import ssl
import threading
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport
from azure.core.utils import case_insensitive_dict

# idle connections kept per origin: one per upload thread, with room to spare (a pool that
# is too small drops connections and pays a new TCP/TLS handshake per request)
POOL_SIZE = 32
CONNECT_TIMEOUT = 20.0
READ_TIMEOUT = 300.0  # a 64 MiB Put Blob on a slow link
# bodies up to this size go out in the same write as the headers (the copy costs less)
SMALL_BODY = 64 * 1024
# a pooled connection the service closed while idle: safe to send again (idempotent requests)
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError,
          ConnectionAbortedError)


class Unsupported(Exception):
    """The origin's settings need the client's own transport (a SOCKS or an HTTPS proxy)."""


def twin(container: Any) -> Any:
    """The same container client (URL, SAS, credential, API version) over a PoolTransport,
    without the storage client's own retries (amlctl's `call` retries); the container itself
    when its origin needs the default transport."""
    transport = PoolTransport()
    if not transport.serves(container.url):
        return container
    return type(container).from_container_url(
        container.url, credential=container.credential, api_version=container.api_version,
        transport=transport, retry_total=0)


class PoolResponse(HttpResponse):
    """A response read whole, as azure-core's pipeline and policies expect it."""

    def __init__(self, request: HttpRequest, response: http.client.HTTPResponse,
                 body: bytes) -> None:
        super().__init__(request, response)
        self.status_code = response.status
        self.headers = case_insensitive_dict(response.getheaders())
        self.reason = response.reason
        self.content_type = self.headers.get("Content-Type")
        self._body = body

    def body(self) -> bytes:
        """The whole body (already read)."""
        return self._body


class _OneWrite:
    """http.client connection behaviour: a small body leaves in the headers' write."""

    _tail: bytes | None = None

    def endheaders(self, message_body: Any = None, *, encode_chunked: bool = False) -> None:
        if isinstance(message_body, bytes) and len(message_body) <= SMALL_BODY:
            self._tail, message_body = message_body, None
        super().endheaders(message_body, encode_chunked=encode_chunked)  # type: ignore[misc]

    def send(self, data: Any) -> None:
        tail, self._tail = self._tail, None
        super().send(data + tail if tail else data)  # type: ignore[misc]


class _HTTP(_OneWrite, http.client.HTTPConnection):
    pass


class _HTTPS(_OneWrite, http.client.HTTPSConnection):
    pass


@dataclass
class _Origin:
    """How to reach one origin, as the SDK's requests Session would, and its idle connections
    (guarded by the transport's lock).

    `proxy`: (host, port) of an HTTP proxy, tunnelled through (CONNECT) for https origins,
    given absolute URLs for http ones; `proxy_headers` go with the CONNECT or each request.
    """

    scheme: str
    host: str
    port: int
    verify: Any = True  # requests' "verify" and "cert" settings (https only)
    cert: Any = None
    proxy: tuple[str, int] | None = None
    proxy_headers: dict[str, str] = field(default_factory=dict)
    idle: list[http.client.HTTPConnection] = field(default_factory=list)
    _tls: ssl.SSLContext | None = None

    def connect(self, timeout: float, read_timeout: float) -> http.client.HTTPConnection:
        """A new connection, connected (and tunnelled); read_timeout set for what follows.
        The TLS context is made on first use: a bad CA bundle fails the request, not the
        store's construction (as with the SDK's transport)."""
        host, port = self.proxy or (self.host, self.port)
        conn: http.client.HTTPConnection
        if self.scheme == "https":
            if self._tls is None:
                self._tls = _tls_context(self.verify, self.cert)
            conn = _HTTPS(host, port, timeout=timeout, context=self._tls)
            if self.proxy:
                conn.set_tunnel(self.host, self.port, headers=self.proxy_headers)
        else:
            conn = _HTTP(host, port, timeout=timeout)
        try:
            conn.connect()
        except BaseException:
            conn.close()
            raise
        assert conn.sock is not None
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn.sock.settimeout(read_timeout)
        return conn

    def target(self, url: str) -> str:
        """The request target: the absolute URL for a plain-HTTP proxy, else path and query."""
        if self.proxy and self.scheme == "http":
            return url
        parts = urlsplit(url)
        return f"{parts.path or '/'}?{parts.query}" if parts.query else parts.path or "/"


class PoolTransport(HttpTransport):
    """azure-core transport over pooled keep-alive http.client connections, per origin."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._origins: dict[str, _Origin] = {}

    def __enter__(self) -> PoolTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def open(self) -> None:
        """Nothing to open: connections are made on first use."""

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            idle = [conn for origin in self._origins.values() for conn in origin.idle]
            for origin in self._origins.values():
                origin.idle.clear()
        for conn in idle:
            conn.close()

    def send(self, request: HttpRequest, **kwargs: Any) -> PoolResponse:  # type: ignore[override]
        """Send one request and read its response whole; network failures are raised as
        azure-core's ServiceRequestError / ServiceResponseError, as the default transport's."""
        body = request.data
        if request.files or not isinstance(body, bytes | None):
            raise TypeError("PoolTransport sends plain requests only (a bytes body or none)")
        origin = self._origin(request.url)
        target = origin.target(request.url)
        headers = dict(request.headers)
        if origin.proxy and origin.scheme == "http":
            headers.update(origin.proxy_headers)
        fresh = False
        while True:
            conn, reused = self._checkout(origin, kwargs, fresh)
            try:
                conn.request(request.method, target, body=body, headers=headers)
                response = conn.getresponse()
                data = response.read()
            except TimeoutError as exc:
                conn.close()
                raise ServiceResponseTimeoutError(exc, error=exc) from exc
            except _STALE as exc:
                conn.close()
                if reused:  # closed by the service while idle: once more, on a new one (the
                    self._drop_idle(origin)  # others idled as long)
                    fresh = True
                    continue
                raise ServiceResponseError(exc, error=exc) from exc
            except (http.client.HTTPException, OSError) as exc:  # incomplete read, bad line
                conn.close()
                raise ServiceResponseError(exc, error=exc) from exc
            if response.will_close:
                conn.close()
            else:
                with self._lock:
                    if len(origin.idle) < self.pool_size:
                        origin.idle.append(conn)
                        conn = None  # type: ignore[assignment]
                if conn is not None:
                    conn.close()
            return PoolResponse(request, response, data)

    def _drop_idle(self, origin: _Origin) -> None:
        with self._lock:
            idle, origin.idle = origin.idle, []
        for conn in idle:
            conn.close()

    def _checkout(self, origin: _Origin, kwargs: dict[str, Any],
                  fresh: bool) -> tuple[http.client.HTTPConnection, bool]:
        """An idle connection (most recent first), else (or when `fresh`) a new one."""
        with self._lock:
            if origin.idle and not fresh:
                return origin.idle.pop(), True
        try:
            return origin.connect(kwargs.get("connection_timeout", CONNECT_TIMEOUT),
                                  kwargs.get("read_timeout", READ_TIMEOUT)), False
        except TimeoutError as exc:
            raise ServiceRequestTimeoutError(exc, error=exc) from exc
        except (OSError, http.client.HTTPException) as exc:  # refused, TLS, proxy refused
            raise ServiceRequestError(exc, error=exc) from exc

    def serves(self, url: str) -> bool:
        """False when `url`'s origin needs what this transport lacks (a SOCKS or an HTTPS
        proxy)."""
        try:
            self._origin(url)
        except Unsupported:
            return False
        return True

    def _origin(self, url: str) -> _Origin:
        scheme, netloc = urlsplit(url)[:2]
        key = f"{scheme}://{netloc}"
        origin = self._origins.get(key)
        if origin is None:
            with self._lock:
                origin = self._origins.get(key)
                if origin is None:
                    origin = self._origins[key] = _origin_for(key)
        return origin


def _origin_for(origin: str) -> _Origin:
    """How the SDK's requests Session would reach `origin` (proxy, CA bundle, client cert)."""
    import requests
    from requests.utils import get_auth_from_url, select_proxy

    parts = urlsplit(origin)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise Unsupported(parts.scheme)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    settings = requests.Session().merge_environment_settings(origin, {}, None, None, None)
    reach = {"verify": settings["verify"], "cert": settings["cert"]}
    proxy = select_proxy(origin, settings["proxies"])
    if not proxy:
        return _Origin(parts.scheme, parts.hostname, port, **reach)
    proxy_parts = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if proxy_parts.scheme != "http" or not proxy_parts.hostname:
        raise Unsupported(proxy_parts.scheme)  # SOCKS, or TLS to the proxy itself
    headers = {}
    user, password = get_auth_from_url(proxy)  # unquoted
    if user:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Proxy-Authorization"] = f"Basic {token}"
    return _Origin(parts.scheme, parts.hostname, port, **reach,
                   proxy=(proxy_parts.hostname, proxy_parts.port or 80), proxy_headers=headers)


def _tls_context(verify: Any, cert: Any) -> ssl.SSLContext:
    """A client TLS context as requests would verify: its CA bundle (REQUESTS_CA_BUNDLE,
    CURL_CA_BUNDLE or certifi's), a folder of certificates, or no check at all."""
    import requests

    if verify is False:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        bundle = verify if isinstance(verify, str) else requests.certs.where()
        context = (ssl.create_default_context(capath=bundle) if os.path.isdir(bundle)
                   else ssl.create_default_context(cafile=bundle))
    if cert:
        context.load_cert_chain(*((cert, None) if isinstance(cert, str) else cert))
    return context
