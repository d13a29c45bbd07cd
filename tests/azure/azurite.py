"""Azurite, Microsoft's storage emulator, as the blob service of the azure backend tests.

Blob semantics (leases, conditional writes, listings with metadata) come from the real
emulator rather than a hand-written fake. `start_azurite` runs `azurite-blob` from the repo's
node_modules (`npm ci` installs the pinned version) on a free loopback port, over HTTPS with
the tests' certificate, with the tests' storage account. Production host names
(`ACCOUNT.blob.core.windows.net`) reach it through `route_hosts(..., blob_port=...)`: Azurite
reads the account from the Host header.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import shutil
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
AZURITE_BLOB = REPO / "node_modules" / ".bin" / "azurite-blob"
ACCOUNT = "amlctlteststore"
ACCOUNT_KEY = base64.b64encode(hashlib.sha256(b"amlctl azurite test account").digest()).decode()
STATE_ACCOUNT = "amlctlstatestore"
STATE_ACCOUNT_KEY = base64.b64encode(hashlib.sha256(b"amlctl azurite state").digest()).decode()
MISSING = ("Azurite is needed by the azure backend tests and is not installed: run `npm ci` in "
           "the repository root (Node.js 20+ and npm required; `make test` does it).")


class AzuriteMissing(RuntimeError):
    """node, npm or the azurite package is not there."""


@dataclass
class Azurite:
    """A running azurite-blob."""

    port: int
    process: subprocess.Popen[bytes]
    location: Path
    accounts: dict[str, str]

    def stop(self) -> None:
        """Stop the emulator (its data folder goes with the test session's temp folder)."""
        if self.process.poll() is None:
            self.process.kill()  # its data is throw-away; a graceful stop takes seconds
            self.process.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int, cert: Path) -> bool:
    """True once the emulator accepts a TLS connection and answers an HTTP request."""
    context = ssl.create_default_context(cafile=str(cert))
    context.check_hostname = False
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as raw, \
                context.wrap_socket(raw, server_hostname=f"{ACCOUNT}.blob.core.windows.net") as tls:
            tls.sendall(b"GET /?comp=list HTTP/1.1\r\nHost: " + ACCOUNT.encode()
                        + b".blob.core.windows.net\r\nConnection: close\r\n\r\n")
            return tls.recv(16).startswith(b"HTTP/1.1")
    except OSError:
        return False


def start_azurite(folder: Path, cert: Path, key: Path, timeout: float = 30) -> Azurite:
    """Start azurite-blob on a free 127.0.0.1 port; raise AzuriteMissing (with what to do)
    when node or the package is missing."""
    if shutil.which("node") is None or not AZURITE_BLOB.exists():
        raise AzuriteMissing(MISSING)
    location = folder / "azurite"
    location.mkdir(parents=True, exist_ok=True)
    accounts = {ACCOUNT: ACCOUNT_KEY, STATE_ACCOUNT: STATE_ACCOUNT_KEY}
    env = {**os.environ,
           "AZURITE_ACCOUNTS": ";".join(f"{name}:{k}" for name, k in accounts.items())}
    for attempt in range(3):  # a free port can be taken between probe and bind
        port = _free_port()
        log = open(folder / f"azurite-{attempt}.log", "wb")  # noqa: SIM115 - child keeps it
        process = subprocess.Popen(
            [str(AZURITE_BLOB), "--blobHost", "127.0.0.1", "--blobPort", str(port),
             "--location", str(location), "--silent", "--skipApiVersionCheck", "--disableTelemetry",
             "--cert", str(cert), "--key", str(key)],
            env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + timeout
        while process.poll() is None and time.monotonic() < deadline:
            if _answers(port, cert):
                return Azurite(port, process, location, accounts)
            time.sleep(0.1)
        if process.poll() is None:
            process.kill()
            process.wait()
    output = (folder / "azurite-2.log").read_text(errors="replace")[-2000:]
    raise AzuriteMissing(f"azurite-blob did not start: {output}")


def state_container(name: str) -> Any:
    """A container client of the state account by its production URL (routed to Azurite
    while `route_hosts(..., blob_port=...)` is in effect)."""
    from azureml._vendor.azure_storage.blob import BlobServiceClient

    service = BlobServiceClient(f"https://{STATE_ACCOUNT}.blob.core.windows.net",
                                credential={"account_name": STATE_ACCOUNT,
                                            "account_key": STATE_ACCOUNT_KEY})
    return service.get_container_client(name)


def azurite_client(azurite: Azurite, cert: Path, account: str, key: str) -> Any:
    """A blob service client of an Azurite account, by loopback address (path-style URL)."""
    from azureml._vendor.azure_storage.blob import BlobServiceClient

    return BlobServiceClient(f"https://127.0.0.1:{azurite.port}/{account}",
                             credential={"account_name": account, "account_key": key},
                             connection_verify=str(cert))


def azurite_container(azurite: Azurite, cert: Path, account: str, key: str, name: str) -> None:
    """Create a container in Azurite (a new workspace's default one)."""
    from azure.core.exceptions import ResourceExistsError

    with contextlib.suppress(ResourceExistsError):  # a re-used name
        azurite_client(azurite, cert, account, key).create_container(name)
