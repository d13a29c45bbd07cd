"""A lean HTTP transport for the blob requests amlctl builds itself (Put Blob, List Blobs).

The storage clients send through azure-core's RequestsTransport: a requests Session that, on
every request, re-reads proxy and CA settings from the environment (the whole of os.environ,
twice), merges cookies and hooks, then hands over to urllib3. For a sync of thousands of small
files that is most of the client's CPU (measured here: ~0.8 ms per small Put Blob through it,
~0.45 ms through this one). `PoolTransport` keeps everything that matters in the storage
client's own pipeline (credential, headers, request ids, logging: see `twin`) and sends over a
urllib3 pool, taking the environment's decisions once per origin with requests' own functions,
so proxies, NO_PROXY and REQUESTS_CA_BUNDLE behave as with the SDK's transport.

It serves only plain requests: a bytes body or none, the response read whole; anything else
(streamed uploads or downloads, multipart) stays on the client's own transport. A request sent
with stream=True is read whole too: the flag then only keeps the pipeline's ContentDecodePolicy
from parsing an XML body the caller parses itself (a listing page parsed twice cost ~0.15 s).
"""

from __future__ import annotations

import os
import threading
from typing import Any
from urllib.parse import urlsplit

import urllib3
from azure.core.exceptions import (
    ServiceRequestError,
    ServiceRequestTimeoutError,
    ServiceResponseError,
    ServiceResponseTimeoutError,
)
from azure.core.pipeline.transport import HttpRequest, HttpResponse, HttpTransport
from azure.core.utils import case_insensitive_dict

# connections per origin: one per upload thread, with room to spare (a pool that is too small
# drops connections and pays a new TCP/TLS handshake per request)
POOL_SIZE = 32
CONNECT_TIMEOUT = 20.0
READ_TIMEOUT = 300.0  # a 64 MiB Put Blob on a slow link


class Unsupported(Exception):
    """The origin's settings need the client's own transport (a SOCKS proxy)."""


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

    def __init__(self, request: HttpRequest, response: urllib3.BaseHTTPResponse) -> None:
        super().__init__(request, response)
        self.status_code = response.status
        self.headers = case_insensitive_dict(response.headers.items())
        self.reason = response.reason
        self.content_type = self.headers.get("Content-Type")
        self._body = response.data

    def body(self) -> bytes:
        """The whole body (already read)."""
        return self._body


class PoolTransport(HttpTransport):
    """azure-core transport over urllib3 pools, one pool manager per origin's settings."""

    def __init__(self, pool_size: int = POOL_SIZE) -> None:
        self.pool_size = pool_size
        self._lock = threading.Lock()
        self._managers: dict[str, urllib3.PoolManager] = {}

    def __enter__(self) -> PoolTransport:
        return self

    def __exit__(self, *args: Any) -> None:
        self.close()

    def open(self) -> None:
        """Nothing to open: pools connect on first use."""

    def close(self) -> None:
        """Close every pooled connection."""
        with self._lock:
            managers, self._managers = list(self._managers.values()), {}
        for manager in managers:
            manager.clear()

    def send(self, request: HttpRequest, **kwargs: Any) -> PoolResponse:  # type: ignore[override]
        """Send one request and read its response whole; network failures are raised as
        azure-core's ServiceRequestError / ServiceResponseError, as the default transport's."""
        body = request.data
        if request.files or not isinstance(body, bytes | None):
            raise TypeError("PoolTransport sends plain requests only (a bytes body or none)")
        manager = self._manager(request.url)
        timeout = urllib3.Timeout(connect=kwargs.get("connection_timeout", CONNECT_TIMEOUT),
                                  read=kwargs.get("read_timeout", READ_TIMEOUT))
        try:
            response = manager.urlopen(request.method, request.url, body=body,
                                       headers=dict(request.headers), redirect=False,
                                       retries=False, timeout=timeout, preload_content=True,
                                       enforce_content_length=True)
        except urllib3.exceptions.ConnectTimeoutError as exc:
            raise ServiceRequestTimeoutError(exc, error=exc) from exc
        except urllib3.exceptions.ReadTimeoutError as exc:
            raise ServiceResponseTimeoutError(exc, error=exc) from exc
        except (urllib3.exceptions.NewConnectionError, urllib3.exceptions.SSLError,
                urllib3.exceptions.ProxyError) as exc:
            raise ServiceRequestError(exc, error=exc) from exc
        except urllib3.exceptions.HTTPError as exc:  # reset, dropped, incomplete read
            raise ServiceResponseError(exc, error=exc) from exc
        return PoolResponse(request, response)

    def serves(self, url: str) -> bool:
        """False when `url`'s origin needs what this transport lacks (a SOCKS proxy)."""
        try:
            self._manager(url)
        except Unsupported:
            return False
        return True

    def _manager(self, url: str) -> urllib3.PoolManager:
        scheme, netloc = urlsplit(url)[:2]
        origin = f"{scheme}://{netloc}"
        manager = self._managers.get(origin)
        if manager is None:
            with self._lock:
                manager = self._managers.get(origin)
                if manager is None:
                    manager = self._managers[origin] = _manager_for(origin, self.pool_size)
        return manager


def _manager_for(origin: str, pool_size: int) -> urllib3.PoolManager:
    """A pool manager configured as the SDK's requests Session would be for `origin`."""
    import requests
    from requests.utils import get_auth_from_url, select_proxy

    settings = requests.Session().merge_environment_settings(origin, {}, None, None, None)
    verify, cert = settings["verify"], settings["cert"]
    tls: dict[str, Any] = {}
    if verify is False:
        tls["cert_reqs"] = "CERT_NONE"
    else:
        bundle = verify if isinstance(verify, str) else requests.certs.where()
        tls["cert_reqs"] = "CERT_REQUIRED"
        tls["ca_cert_dir" if os.path.isdir(bundle) else "ca_certs"] = bundle
    if cert:
        tls["cert_file"], tls["key_file"] = (cert, None) if isinstance(cert, str) else cert
    proxy = select_proxy(origin, settings["proxies"])
    if proxy:
        if not proxy.lower().startswith(("http://", "https://")):
            raise Unsupported(proxy.split("://")[0])
        user, password = get_auth_from_url(proxy)
        headers = urllib3.make_headers(proxy_basic_auth=f"{user}:{password}") if user else None
        return urllib3.ProxyManager(proxy, proxy_headers=headers, maxsize=pool_size, **tls)
    return urllib3.PoolManager(maxsize=pool_size, **tls)
