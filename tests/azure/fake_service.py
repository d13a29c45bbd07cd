"""A local stand-in for the Azure REST edge that azureml-core talks to.

It serves, over HTTPS on 127.0.0.1 with a certificate made at start-up:
- ARM (management.azure.com): subscriptions, resource groups, the workspace (api-version
  2022-05-01), compute PUT / PATCH / DELETE (2020-02-02) answered with an
  `Azure-AsyncOperation` URL, that operation's status, VM sizes and usages of a region;
- the AML region host (<region>.api.azureml.ms): discovery, compute GET / list under
  `/rp/workspaces/...`, and the datastore service (`/datastore/v1.0/...`);
- blob storage (<account>.blob.core.windows.net): list, put blob, put block / block list,
  metadata, delete, with Shared Key signatures checked.

The SDK reaches it by name: tests route those host names to this server at the DNS step
(see `route_hosts`), so the SDK runs unchanged with its real AzureCloud settings.

State lives in memory behind one lock. Behaviour follows the real service where the SDK can
tell: provisioning states, node counts reaching min_nodes when an operation completes, write-only
secrets, 404/409 answers, ARM error bodies. Knobs let a test inject failures (`fail_next`),
slow operations down (`operation_polls`), or make a re-created cluster keep its old size
(`reuse_keeps_old_size`), as AML does when a name is reused too fast.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import re
import socket
import ssl
import threading
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from fake_arm import ArmDeployments
from fake_history import RunHistory

ARM_HOST = "management.azure.com"
AML_HOST_SUFFIX = ".api.azureml.ms"
BLOB_HOST_SUFFIX = ".blob.core.windows.net"
FILE_HOST_SUFFIX = ".file.core.windows.net"
AAD_HOST = "login.microsoftonline.com"
# Names the certificate covers; every one of them is routed to the fake.
CERT_NAMES = [ARM_HOST, "*" + AML_HOST_SUFFIX, "*" + BLOB_HOST_SUFFIX, "*" + FILE_HOST_SUFFIX,
              AAD_HOST, "localhost"]

WORKSPACE_API_VERSIONS = {"2020-01-01", "2022-05-01", "2022-10-01", "2023-04-01", "2023-10-01"}
COMPUTE_API_VERSIONS = {"2020-02-02", "2021-01-01", "2022-05-01", "2023-04-01"}
SUBSCRIPTION_API_VERSIONS = {"2016-06-01", "2019-11-01", "2020-01-01", "2021-01-01", "2022-12-01"}
RESOURCE_GROUP_API_VERSIONS = {"2019-07-01", "2021-04-01", "2022-09-01", "2023-07-01",
                               "2019-10-01", "2025-04-01"}

ML_PROVIDER = "Microsoft.MachineLearningServices"
TEST_SUBSCRIPTION = "00000000-0000-0000-0000-00000000abcd"

# Regional catalogue: name -> (family, vCPUs, GPUs, memory GB, low priority capable)
VM_SIZES: dict[str, tuple[str, int, int, float, bool]] = {
    "STANDARD_D2_V2": ("standardDv2Family", 2, 0, 7.0, True),
    "STANDARD_D3_V2": ("standardDv2Family", 4, 0, 14.0, True),
    "STANDARD_DS3_V2": ("standardDSv2Family", 4, 0, 14.0, True),
    "STANDARD_D4S_V3": ("standardDSv3Family", 4, 0, 16.0, True),
    "STANDARD_D2_V3": ("standardDv3Family", 2, 0, 8.0, True),
    "STANDARD_NC6": ("standardNCFamily", 6, 1, 56.0, True),
    "STANDARD_NC6S_V3": ("standardNCSv3Family", 6, 1, 112.0, True),
    "STANDARD_NC4AS_T4_V3": ("standardNCASv3_T4Family", 4, 1, 28.0, True),
}


def utcnow() -> str:
    """ISO-8601 UTC timestamp as the services write them."""
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


# --- certificate ------------------------------------------------------------------------------


def make_certificate(folder: Path, names: list[str] = CERT_NAMES) -> tuple[Path, Path]:
    """Write a self-signed certificate (also its own CA) for `names` and 127.0.0.1.

    Returns (certificate path, private key path). The certificate file doubles as the CA
    bundle clients are told to trust.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "amlctl test service")])
    now = dt.datetime.now(dt.UTC)
    alt_names: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt_names.append(x509.IPAddress(ipaddress.ip_address("127.0.0.1")))
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=2))
        .add_extension(x509.SubjectAlternativeName(alt_names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "service-cert.pem", folder / "service-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_path, key_path


def make_token(audience: str, *, tenant: str = "72f988bf-0000-0000-0000-000000000001",
               object_id: str = "a1b2c3d4-0000-0000-0000-000000000002",
               lifetime_s: int = 3600) -> str:
    """A JWT shaped like an AAD access token (unsigned HS256; the fake reads, never trusts)."""
    import jwt

    now = int(dt.datetime.now(dt.UTC).timestamp())
    claims = {"aud": audience, "iss": f"https://sts.windows.net/{tenant}/", "iat": now,
              "nbf": now, "exp": now + lifetime_s, "tid": tenant, "oid": object_id,
              "appid": "11111111-0000-0000-0000-000000000003"}
    return jwt.encode(claims, "amlctl-fake-service-signing-key-32b", algorithm="HS256")


# --- state ------------------------------------------------------------------------------------


@dataclass
class Call:
    """One request the fake received (for assertions on what the SDK really sent)."""

    method: str
    host: str
    path: str
    query: dict[str, str]
    body: bytes
    headers: dict[str, str]
    status: int = 0
    raw_path: str = ""  # as sent, still percent-encoded (Shared Key signs this form)
    raw_query: list[tuple[str, str]] = field(default_factory=list)

    def json(self) -> Any:
        return json.loads(self.body or b"null")


@dataclass
class Operation:
    """An ARM long-running operation; completes after `polls_left` status reads."""

    id: str
    polls_left: int
    on_done: Callable[[], None]
    status: str = "InProgress"
    error: dict[str, Any] | None = None


@dataclass
class Failure:
    """A scripted failure: the next `times` requests matching method and path get `status`."""

    method: str
    path_fragment: str
    status: int
    times: int
    reset_connection: bool = False
    after: int = 0  # matching requests to let through first


@dataclass
class Blob:
    """A stored blob."""

    data: bytes
    metadata: dict[str, str]
    content_md5: str | None
    content_type: str
    etag: str
    last_modified: str


@dataclass
class Workspace:
    """A workspace and what lives in it."""

    subscription_id: str
    resource_group: str
    name: str
    location: str
    tags: dict[str, str]
    workspace_id: str
    storage_account: str
    computes: dict[str, dict[str, Any]] = field(default_factory=dict)
    datastores: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_datastore: str = "workspaceblobstore"
    # name -> vmSize of clusters deleted recently (AML may hand the old size back on reuse)
    recently_deleted: dict[str, str] = field(default_factory=dict)

    @property
    def arm_id(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/{ML_PROVIDER}/workspaces/{self.name}")


class ServiceError(Exception):
    """Raised inside a route to answer with an error body."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass
class Hold:
    """A request kept waiting by `FakeAzure.hold_next`."""

    method: str
    path_fragment: str
    reached: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)


class FakeAzure:
    """In-memory Azure: ARM, the AML workspace services and blob storage of one subscription."""

    def __init__(self, subscription_id: str = "00000000-0000-0000-0000-000000000000",
                 tenant_id: str = "72f988bf-0000-0000-0000-000000000001") -> None:
        self.subscription_id = subscription_id
        self.tenant_id = tenant_id
        self.lock = threading.RLock()
        self.resource_groups: dict[str, dict[str, Any]] = {}
        self.workspaces: dict[tuple[str, str], Workspace] = {}
        self.operations: dict[str, Operation] = {}
        # (account, container) -> {blob name -> Blob}; account keys by account name
        self.containers: dict[tuple[str, str], dict[str, Blob]] = {}
        self.account_keys: dict[str, str] = {}
        self.uncommitted_blocks: dict[tuple[str, str, str], dict[str, bytes]] = {}
        self.service_principals: dict[str, str] = {}  # client id -> secret
        self.calls: list[Call] = []
        self.failures: list[Failure] = []
        self.holds: list[Hold] = []
        # knobs
        self.operation_polls = 0  # status reads an operation stays InProgress
        self.reuse_keeps_old_size = False
        self.vcpu_quota: dict[str, int] = {}  # family -> dedicated vCPU limit
        self.arm = ArmDeployments(self)  # provider, template deployments (fake_arm.py)
        self.history = RunHistory(self)  # experiments, snapshots, runs (fake_history.py)
        # Where workspaces keep their default storage: (account, key, make a container), e.g.
        # an Azurite account; None: this fake's own blob emulation.
        self.default_storage: tuple[str, str, Callable[[str], None]] | None = None
        self.port = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- life cycle ----------------------------------------------------------------------------

    def start(self, cert_path: Path, key_path: Path) -> None:
        """Serve on a free port of 127.0.0.1 in a background thread."""
        handler = _make_handler(self)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert_path), str(key_path))
        server.socket = context.wrap_socket(server.socket, server_side=True)
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="fake-azure",
                                        kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def reset(self) -> None:
        """Forget every resource, call and knob (between tests)."""
        with self.lock:
            self.resource_groups.clear()
            self.workspaces.clear()
            self.operations.clear()
            self.containers.clear()
            self.account_keys.clear()
            self.uncommitted_blocks.clear()
            self.service_principals.clear()
            self.calls.clear()
            self.failures.clear()
            for hold in self.holds:
                hold.release.set()
            self.holds.clear()
            self.operation_polls = 0
            self.reuse_keeps_old_size = False
            self.vcpu_quota.clear()
            self.history.reset()
            self.arm.reset()

    # -- test set-up helpers -------------------------------------------------------------------

    def add_workspace(self, resource_group: str, name: str, location: str = "westeurope",
                      tags: dict[str, str] | None = None) -> Workspace:
        """Create a workspace as `Workspace.create` would leave it, with its default datastore."""
        with self.lock:
            self.resource_groups.setdefault(resource_group, {"location": location, "tags": {}})
            account = re.sub(r"[^a-z0-9]", "", name.lower())[:16] + "store"
            key = base64.b64encode(hashlib.sha256(account.encode()).digest()).decode()
            if self.default_storage is not None:
                account, key, _ = self.default_storage
            ws = Workspace(self.subscription_id, resource_group, name, location, dict(tags or {}),
                           str(uuid.uuid4()), account)
            self.account_keys[account] = key
            container = f"azureml-blobstore-{ws.workspace_id}"
            if self.default_storage is not None:
                self.default_storage[2](container)
            else:
                self.containers[(account, container)] = {}
            ws.datastores["workspaceblobstore"] = self._datastore_record(
                "workspaceblobstore", "AzureBlob", account, container, "AccountKey", key, None)
            self.workspaces[(resource_group.lower(), name.lower())] = ws
            return ws

    def add_compute(self, resource_group: str, workspace: str, name: str,
                    vm_size: str = "STANDARD_D2_V2", max_nodes: int = 2) -> dict[str, Any]:
        """A provisioned AmlCompute cluster, as a finished create would leave it."""
        with self.lock:
            ws = self.workspaces[(resource_group.lower(), workspace.lower())]
            body = {"location": ws.location, "properties": {
                "computeType": "AmlCompute", "properties": {
                    "vmSize": vm_size, "vmPriority": "Dedicated",
                    "scaleSettings": {"minNodeCount": 0, "maxNodeCount": max_nodes}}}}
            self._compute_put(ws, name, body)
            self._settle(ws.computes[name], "Succeeded")
            return ws.computes[name]

    def add_storage_account(self, account: str, containers: list[str]) -> str:
        """Create a storage account with containers; returns its key."""
        with self.lock:
            key = base64.b64encode(hashlib.sha256(account.encode()).digest()).decode()
            self.account_keys[account] = key
            for c in containers:
                self.containers.setdefault((account, c), {})
            return key

    def add_service_principal(self, client_id: str, secret: str) -> None:
        """Let the token endpoint accept this client id and secret."""
        with self.lock:
            self.service_principals[client_id] = secret

    def fail_next(self, method: str, path_fragment: str, status: int, times: int = 1,
                  reset_connection: bool = False, after: int = 0) -> None:
        """Answer the next `times` matching requests with `status` (or drop the connection),
        once `after` matching requests have gone through."""
        with self.lock:
            self.failures.append(Failure(method.upper(), path_fragment, status, times,
                                         reset_connection, after))

    def hold_next(self, method: str, path_fragment: str) -> Hold:
        """Keep the next matching request waiting (before it is served) until the test sets
        `hold.release`; `hold.reached` is set once it arrives."""
        with self.lock:
            hold = Hold(method.upper(), path_fragment)
            self.holds.append(hold)
            return hold

    def compute(self, resource_group: str, workspace: str, name: str) -> dict[str, Any] | None:
        """The stored compute record, as the service would serve it."""
        with self.lock:
            ws = self.workspaces[(resource_group.lower(), workspace.lower())]
            rec = ws.computes.get(name)
            return json.loads(json.dumps(rec)) if rec else None

    def calls_to(self, method: str, fragment: str) -> list[Call]:
        """Recorded calls with this method whose path contains `fragment`."""
        with self.lock:
            return [c for c in self.calls if c.method == method and fragment in c.path]

    # -- request entry -------------------------------------------------------------------------

    def handle(self, call: Call) -> tuple[int, dict[str, str], bytes]:
        """Route one request; returns status, headers and body."""
        with self.lock:
            held = next((h for h in self.holds if not h.reached.is_set()
                         and h.method == call.method and h.path_fragment in call.path), None)
            if held is not None:
                held.reached.set()
        if held is not None:  # waits outside the lock: other requests go on
            held.release.wait(timeout=120)
        with self.lock:
            self.calls.append(call)
            scripted = self._scripted_failure(call)
            if scripted is not None:
                if scripted.reset_connection:
                    raise ConnectionResetError("scripted reset")
                return self._error(scripted.status, "TransientError",
                                   f"Scripted failure {scripted.status}")
            try:
                if call.host == ARM_HOST:
                    self._require_token(call)
                    return self._arm(call)
                if call.host.endswith(AML_HOST_SUFFIX):
                    if call.path.rstrip("/") != "/discovery":  # discovery is anonymous
                        self._require_token(call)
                    return self._aml(call)
                if call.host.endswith(BLOB_HOST_SUFFIX):
                    return self._blob(call)
                if call.host == AAD_HOST:
                    return self._aad(call)
                raise ServiceError(404, "HostNotFound", f"No service at {call.host}")
            except ServiceError as e:
                return self._error(e.status, e.code, e.message, xml=call.host.endswith(
                    BLOB_HOST_SUFFIX))

    def _scripted_failure(self, call: Call) -> Failure | None:
        for f in self.failures:
            if f.times > 0 and f.method == call.method and f.path_fragment in call.path:
                if f.after > 0:
                    f.after -= 1
                    continue
                f.times -= 1
                return f
        return None

    def _require_token(self, call: Call) -> None:
        import jwt

        auth = call.headers.get("authorization", "")
        if not auth.startswith("Bearer "):
            raise ServiceError(401, "AuthenticationFailed",
                               "Authentication failed. The 'Authorization' header is missing.")
        try:
            claims = jwt.decode(auth[7:], options={"verify_signature": False})
        except jwt.PyJWTError as e:
            raise ServiceError(401, "InvalidAuthenticationToken",
                               f"The access token is invalid: {e}") from e
        if call.host == ARM_HOST and claims.get("aud") not in (
                "https://management.core.windows.net/", "https://management.azure.com/"):
            raise ServiceError(401, "InvalidAuthenticationTokenAudience",
                               f"The access token has an invalid audience: {claims.get('aud')}")

    def _error(self, status: int, code: str, message: str,
               xml: bool = False) -> tuple[int, dict[str, str], bytes]:
        if xml:
            body = (f'<?xml version="1.0" encoding="utf-8"?><Error><Code>{escape(code)}</Code>'
                    f"<Message>{escape(message)}</Message></Error>").encode()
            return status, {"Content-Type": "application/xml", "x-ms-error-code": code}, body
        headers = {"Content-Type": "application/json", "x-ms-failure-cause": "gateway"}
        if status == 429:
            headers["Retry-After"] = "0"
        return status, headers, json.dumps({"error": {"code": code, "message": message,
                                                      "details": []}}).encode()

    @staticmethod
    def _json(status: int, obj: Any, headers: dict[str, str] | None = None
              ) -> tuple[int, dict[str, str], bytes]:
        h = {"Content-Type": "application/json; charset=utf-8"}
        h.update(headers or {})
        return status, h, json.dumps(obj).encode()

    # -- Microsoft Entra ID (client credentials only) ------------------------------------------

    def _aad(self, call: Call) -> tuple[int, dict[str, str], bytes]:
        base = f"https://{AAD_HOST}"
        m = re.match(r"^/([^/]+)/v2\.0/\.well-known/openid-configuration$", call.path)
        if m and call.method == "GET":
            tenant = m.group(1)
            return self._json(200, {
                "issuer": f"{base}/{tenant}/v2.0",
                "authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/authorize",
                "token_endpoint": f"{base}/{tenant}/oauth2/v2.0/token",
                "device_authorization_endpoint": f"{base}/{tenant}/oauth2/v2.0/devicecode",
                "jwks_uri": f"{base}/{tenant}/discovery/v2.0/keys",
                "response_types_supported": ["code", "id_token", "token"],
                "token_endpoint_auth_methods_supported": ["client_secret_post"],
                "tenant_region_scope": "EU"})
        if call.path == "/common/discovery/instance" and call.method == "GET":
            return self._json(200, {
                "tenant_discovery_endpoint":
                    f"{base}/common/v2.0/.well-known/openid-configuration",
                "api-version": "1.1",
                "metadata": [{"preferred_network": AAD_HOST, "preferred_cache": AAD_HOST,
                              "aliases": [AAD_HOST]}]})
        m = re.match(r"^/([^/]+)/oauth2/v2\.0/token$", call.path)
        if m and call.method == "POST":
            form = dict(urllib.parse.parse_qsl(call.body.decode()))
            if form.get("grant_type") != "client_credentials":
                return self._json(400, {"error": "unsupported_grant_type"})
            client = form.get("client_id", "")
            if self.service_principals.get(client) != form.get("client_secret"):
                return self._json(401, {"error": "invalid_client", "error_description":
                                        "AADSTS7000215: Invalid client secret provided."})
            scope = form.get("scope", "").split()[0]
            audience = scope[: -len(".default")] if scope.endswith("/.default") else scope
            audience = audience[:-1] if audience.endswith("//") else audience
            return self._json(200, {"token_type": "Bearer", "expires_in": 3599,
                                    "ext_expires_in": 3599,
                                    "access_token": make_token(audience, tenant=m.group(1))})
        raise ServiceError(404, "NotFound", f"No route for {call.method} {call.path}")

    # -- ARM ----------------------------------------------------------------------------------

    def _arm(self, call: Call) -> tuple[int, dict[str, str], bytes]:
        p = call.path.rstrip("/")
        sub = re.escape(self.subscription_id)
        if call.method == "GET" and p == "/subscriptions":
            self._api_version(call, SUBSCRIPTION_API_VERSIONS)
            return self._json(200, {"value": [{
                "id": f"/subscriptions/{self.subscription_id}",
                "subscriptionId": self.subscription_id, "tenantId": self.tenant_id,
                "displayName": "amlctl test subscription", "state": "Enabled"}]})
        if not re.match(rf"^/subscriptions/{sub}(/|$)", p, re.I):
            raise ServiceError(404, "SubscriptionNotFound",
                               f"The subscription '{p.split('/')[2]}' could not be found.")
        routed = self.arm.handle(call, p[len(f"/subscriptions/{self.subscription_id}"):])
        if routed is not None:
            return routed
        m = re.match(rf"^/subscriptions/{sub}/resourcegroups/([^/]+)$", p, re.I)
        if m:
            return self._resource_group(call, urllib.parse.unquote(m.group(1)))
        m = re.match(rf"^/subscriptions/{sub}/providers/{ML_PROVIDER}/locations/([^/]+)/"
                     r"(vmSizes|usages|computeOperationsStatus/([^/]+))$", p, re.I)
        if m:
            if m.group(3):
                return self._operation_status(call, m.group(3))
            self._api_version(call, COMPUTE_API_VERSIONS)
            return self._vm_sizes() if m.group(2) == "vmSizes" else self._usages(m.group(1))
        m = re.match(rf"^/subscriptions/{sub}/resourceGroups/([^/]+)/providers/{ML_PROVIDER}"
                     r"/workspaces/([^/]+)(?:/computes/([^/]+))?$", p, re.I)
        if m:
            ws = self._workspace(m.group(1), m.group(2))
            if m.group(3) is None:
                self._api_version(call, WORKSPACE_API_VERSIONS)
                if call.method == "PATCH":
                    body = call.json()
                    if "tags" in body:
                        ws.tags = dict(body["tags"] or {})
                elif call.method == "DELETE":
                    # the workspace goes; its storage account stays, as with the real service
                    del self.workspaces[(ws.resource_group.lower(), ws.name.lower())]
                    self.history.experiments.pop(ws.arm_id.lower(), None)
                    self.history.runs.pop(ws.arm_id.lower(), None)
                    return 200, {"Content-Length": "0"}, b""
                elif call.method != "GET":
                    raise ServiceError(405, "MethodNotAllowed",
                                       "Only GET, PATCH and DELETE are modelled")
                return self._json(200, self._workspace_body(ws))
            self._api_version(call, COMPUTE_API_VERSIONS)
            name = urllib.parse.unquote(m.group(3))
            if call.method == "PUT":
                return self._compute_put(ws, name, call.json())
            if call.method == "PATCH":
                return self._compute_patch(ws, name, call.json())
            if call.method == "DELETE":
                return self._compute_delete(ws, name, call.query)
            if call.method == "GET":
                return self._compute_get(ws, name)
        raise ServiceError(404, "NotFound", f"No route for {call.method} {p}")

    def _api_version(self, call: Call, allowed: set[str]) -> None:
        version = call.query.get("api-version")
        if version not in allowed:
            raise ServiceError(400, "InvalidApiVersionParameter",
                               f"The api-version '{version}' is invalid. The supported versions "
                               f"are '{', '.join(sorted(allowed))}'.")

    def _resource_group(self, call: Call, name: str) -> tuple[int, dict[str, str], bytes]:
        self._api_version(call, RESOURCE_GROUP_API_VERSIONS)
        rid = f"/subscriptions/{self.subscription_id}/resourceGroups/{name}"
        if call.method == "PUT":
            body = call.json()
            existed = name in self.resource_groups
            self.resource_groups[name] = {"location": body["location"],
                                          "tags": body.get("tags") or {}}
            status = 200 if existed else 201
        elif call.method in ("GET", "HEAD"):
            if name not in self.resource_groups:
                raise ServiceError(404, "ResourceGroupNotFound",
                                   f"Resource group '{name}' could not be found.")
            status = 204 if call.method == "HEAD" else 200
        else:
            raise ServiceError(405, "MethodNotAllowed", "Only GET/HEAD/PUT are modelled")
        rg = self.resource_groups[name]
        return self._json(status, {"id": rid, "name": name, "type": "Microsoft.Resources/"
                                   "resourceGroups", "location": rg["location"],
                                   "tags": rg["tags"],
                                   "properties": {"provisioningState": "Succeeded"}})

    def _resource_group_record(self, name: str) -> dict[str, Any]:
        """A resource group by name (ARM compares names case-insensitively)."""
        for key, rg in self.resource_groups.items():
            if key.lower() == name.lower():
                return rg
        raise ServiceError(404, "ResourceGroupNotFound",
                           f"Resource group '{name}' could not be found.")

    def _workspace(self, resource_group: str, name: str) -> Workspace:
        rg = urllib.parse.unquote(resource_group)
        ws = self.workspaces.get((rg.lower(), urllib.parse.unquote(name).lower()))
        if ws is None:
            if rg not in self.resource_groups and rg.lower() not in {
                    k.lower() for k in self.resource_groups}:
                raise ServiceError(404, "ResourceGroupNotFound",
                                   f"Resource group '{rg}' could not be found.")
            raise ServiceError(404, "ResourceNotFound",
                               f"The Resource '{ML_PROVIDER}/workspaces/{name}' under resource "
                               f"group '{rg}' was not found.")
        return ws

    def _workspace_body(self, ws: Workspace) -> dict[str, Any]:
        rg_id = f"/subscriptions/{ws.subscription_id}/resourceGroups/{ws.resource_group}"
        return {
            "id": ws.arm_id, "name": ws.name, "type": f"{ML_PROVIDER}/workspaces",
            "location": ws.location, "tags": ws.tags,
            "identity": {"type": "SystemAssigned", "principalId": str(uuid.uuid5(
                uuid.NAMESPACE_URL, ws.arm_id)), "tenantId": self.tenant_id},
            "sku": {"name": "Basic", "tier": "Basic"},
            "systemData": {"createdAt": utcnow(), "createdBy": "amlctl-tests",
                           "createdByType": "Application"},
            "properties": {
                "friendlyName": ws.name, "description": "",
                "storageAccount": f"{rg_id}/providers/Microsoft.Storage/storageAccounts/"
                                  f"{ws.storage_account}",
                "keyVault": f"{rg_id}/providers/Microsoft.KeyVault/vaults/{ws.name}kv",
                "applicationInsights": f"{rg_id}/providers/Microsoft.insights/components/"
                                       f"{ws.name}ai",
                "containerRegistry": None, "hbiWorkspace": False,
                "discoveryUrl": f"https://{ws.location}{AML_HOST_SUFFIX}/discovery",
                "workspaceId": ws.workspace_id, "provisioningState": "Succeeded",
                "publicNetworkAccess": "Enabled", "v1LegacyMode": False,
                "mlFlowTrackingUri": f"azureml://{ws.location}{AML_HOST_SUFFIX}/mlflow/v1.0"
                                     f"{ws.arm_id}",
            },
        }

    # -- computes --------------------------------------------------------------------------------

    def _new_operation(self, ws: Workspace, on_done: Callable[[], None]) -> str:
        op_id = str(uuid.uuid4())
        self.operations[op_id] = Operation(op_id, self.operation_polls, on_done)
        return (f"https://{ARM_HOST}/subscriptions/{ws.subscription_id}/providers/{ML_PROVIDER}"
                f"/locations/{ws.location}/computeOperationsStatus/{op_id}"
                f"?api-version=2020-02-02&service=new")

    def _operation_status(self, call: Call, op_id: str) -> tuple[int, dict[str, str], bytes]:
        op = self.operations.get(op_id)
        if op is None:
            raise ServiceError(404, "NotFound", f"Operation {op_id} not found")
        if op.status == "InProgress":
            if op.polls_left > 0:
                op.polls_left -= 1
            else:
                op.on_done()
                op.status = "Succeeded"
        body: dict[str, Any] = {"status": op.status}
        if op.error:
            body["error"] = op.error
        return self._json(200, body)

    def _compute_get(self, ws: Workspace, name: str) -> tuple[int, dict[str, str], bytes]:
        rec = ws.computes.get(name)
        if rec is None:
            raise ServiceError(404, "ResourceNotFound",
                               f"Compute '{name}' not found in workspace '{ws.name}'.")
        return self._json(200, rec)

    def _compute_put(self, ws: Workspace, name: str,
                     body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9-]{1,15}", name) or name.endswith("-"):
            raise ServiceError(400, "ValidationError",
                               "Compute name is invalid. It must be 2-16 characters: letters, "
                               "digits and hyphens, starting with a letter.")
        existing = ws.computes.get(name)
        if existing is not None:
            state = existing["properties"]["provisioningState"]
            if state == "Deleting":
                raise ServiceError(409, "Conflict",
                                   f"Compute '{name}' is being deleted. Try again once the "
                                   "delete has completed.")
            raise ServiceError(409, "Conflict",
                               f"Compute '{name}' already exists. Properties other than scale "
                               "settings cannot be updated.")
        props = body.get("properties") or {}
        if props.get("computeType") != "AmlCompute":
            raise ServiceError(400, "ValidationError", "Only AmlCompute is modelled")
        aml = props.get("properties") or {}
        vm_size = aml.get("vmSize") or "STANDARD_NC6"
        if vm_size.upper() not in VM_SIZES:
            raise ServiceError(400, "BadArgument",
                               f"The specified VM size '{vm_size}' is not supported in "
                               f"{ws.location}.")
        priority = {"dedicated": "Dedicated", "lowpriority": "LowPriority"}.get(
            str(aml.get("vmPriority") or "dedicated").lower())
        if priority is None:
            raise ServiceError(400, "BadArgument",
                               f"Invalid vmPriority '{aml.get('vmPriority')}'.")
        scale = aml.get("scaleSettings") or {}
        min_nodes = int(scale.get("minNodeCount") or 0)
        max_nodes = int(scale.get("maxNodeCount") if scale.get("maxNodeCount") is not None else 4)
        idle = scale.get("nodeIdleTimeBeforeScaleDown") or "PT120S"
        if min_nodes > max_nodes:
            raise ServiceError(400, "BadArgument", "minNodeCount must be <= maxNodeCount")
        family, vcpus = VM_SIZES[vm_size.upper()][0], VM_SIZES[vm_size.upper()][1]
        limit = self.vcpu_quota.get(family)
        if limit is not None and priority == "Dedicated" and max_nodes * vcpus > limit:
            raise ServiceError(400, "QuotaExceeded",
                               f"Operation results in exceeding quota limits of Core. Maximum "
                               f"allowed: {limit}, Current in use: 0, Additional requested: "
                               f"{max_nodes * vcpus}.")
        if self.reuse_keeps_old_size and name in ws.recently_deleted:
            vm_size = ws.recently_deleted[name]
        subnet = aml.get("subnet")
        creds = aml.get("userAccountCredentials")
        now = utcnow()
        rec = {
            "id": f"{ws.arm_id}/computes/{name}", "name": name,
            "type": f"{ML_PROVIDER}/workspaces/computes",
            "location": props.get("computeLocation") or body.get("location") or ws.location,
            "tags": body.get("tags"),
            "properties": {
                "createdOn": now, "modifiedOn": now,
                "description": props.get("description"),
                "computeType": "AmlCompute",
                "computeLocation": props.get("computeLocation") or ws.location,
                "provisioningState": "Creating", "provisioningErrors": None,
                "provisioningStateTransitionTime": now,
                "resourceId": None, "isAttachedCompute": False, "disableLocalAuth": False,
                "properties": {
                    "vmSize": vm_size, "vmPriority": priority,
                    "scaleSettings": {"maxNodeCount": max_nodes, "minNodeCount": min_nodes,
                                      "nodeIdleTimeBeforeScaleDown": idle},
                    "subnet": {"id": subnet["id"]} if subnet and subnet.get("id") else None,
                    "userAccountCredentials": (
                        {"adminUserName": creds.get("adminUserName"),
                         "adminUserSshPublicKey": creds.get("adminUserSshPublicKey")}
                        if creds else None),
                    "remoteLoginPortPublicAccess": self._ssh_access(aml, subnet),
                    "enableNodePublicIp": aml.get("enableNodePublicIp", True),
                    "osType": "Linux", "isolatedNetwork": False, "propertyBag": None,
                    "allocationState": "Steady", "allocationStateTransitionTime": now,
                    "errors": None, "currentNodeCount": 0, "targetNodeCount": 0,
                    "nodeStateCounts": self._node_counts(0),
                },
            },
        }
        if not creds:
            del rec["properties"]["properties"]["userAccountCredentials"]
        if body.get("identity"):
            rec["identity"] = body["identity"]
        ws.computes[name] = rec

        def done() -> None:
            ws.recently_deleted.pop(name, None)
            self._settle(rec, "Succeeded")

        return self._json(201, rec, {"Azure-AsyncOperation": self._new_operation(ws, done)})

    @staticmethod
    def _ssh_access(aml: dict[str, Any], subnet: Any) -> str:
        asked = aml.get("remoteLoginPortPublicAccess") or "NotSpecified"
        if asked == "NotSpecified":
            return "Disabled" if subnet else "Enabled"
        return asked

    @staticmethod
    def _node_counts(idle: int) -> dict[str, int]:
        return {"idleNodeCount": idle, "runningNodeCount": 0, "preparingNodeCount": 0,
                "unusableNodeCount": 0, "leavingNodeCount": 0, "preemptedNodeCount": 0}

    def _settle(self, rec: dict[str, Any], state: str) -> None:
        """Finish an operation: nodes reach min_nodes (and never exceed max_nodes)."""
        now = utcnow()
        aml = rec["properties"]["properties"]
        scale = aml["scaleSettings"]
        nodes = max(scale["minNodeCount"], min(aml["currentNodeCount"], scale["maxNodeCount"]))
        aml.update(currentNodeCount=nodes, targetNodeCount=nodes, allocationState="Steady",
                   allocationStateTransitionTime=now, nodeStateCounts=self._node_counts(nodes))
        rec["properties"].update(provisioningState=state, modifiedOn=now,
                                 provisioningStateTransitionTime=now)

    def _compute_patch(self, ws: Workspace, name: str,
                       body: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
        rec = ws.computes.get(name)
        if rec is None:
            raise ServiceError(404, "ResourceNotFound", f"Compute '{name}' not found.")
        if rec["properties"]["provisioningState"] in ("Creating", "Deleting"):
            raise ServiceError(409, "Conflict", f"Compute '{name}' is busy "
                               f"({rec['properties']['provisioningState']}).")
        props = (body.get("properties") or {}).get("properties") or {}
        unknown = set(props) - {"scaleSettings"}
        if unknown:
            raise ServiceError(400, "BadArgument",
                               f"Only scaleSettings can be updated, not {sorted(unknown)}.")
        new = props.get("scaleSettings") or {}
        old = rec["properties"]["properties"]["scaleSettings"]
        merged = {"minNodeCount": int(new.get("minNodeCount", old["minNodeCount"])),
                  "maxNodeCount": int(new.get("maxNodeCount", old["maxNodeCount"])),
                  "nodeIdleTimeBeforeScaleDown": new.get("nodeIdleTimeBeforeScaleDown")
                  or old["nodeIdleTimeBeforeScaleDown"]}
        if merged["minNodeCount"] > merged["maxNodeCount"]:
            raise ServiceError(400, "BadArgument", "minNodeCount must be <= maxNodeCount")
        if merged == old:
            return self._json(200, rec)  # nothing changed: no operation, as the SDK expects
        rec["properties"]["properties"]["scaleSettings"] = merged
        rec["properties"]["provisioningState"] = "Updating"
        return self._json(200, rec, {
            "Azure-AsyncOperation": self._new_operation(ws, lambda: self._settle(rec,
                                                                               "Succeeded"))})

    def _compute_delete(self, ws: Workspace, name: str,
                        query: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        rec = ws.computes.get(name)
        if rec is None:
            raise ServiceError(404, "ResourceNotFound", f"Compute '{name}' not found.")
        action = query.get("underlyingResourceAction")
        if action not in ("Delete", "Detach", "delete", "detach"):
            raise ServiceError(400, "BadArgument",
                               "underlyingResourceAction must be Delete or Detach.")
        rec["properties"]["provisioningState"] = "Deleting"
        old_size = rec["properties"]["properties"]["vmSize"]

        def done() -> None:
            ws.computes.pop(name, None)
            ws.recently_deleted[name] = old_size

        return 202, {"Azure-AsyncOperation": self._new_operation(ws, done),
                     "Content-Length": "0"}, b""

    def _vm_sizes(self) -> tuple[int, dict[str, str], bytes]:
        sizes = [{"name": n, "family": f, "vCPUs": c, "gpus": g, "osVhdSizeMB": 1047552,
                  "maxResourceVolumeMB": 100000, "memoryGB": m, "lowPriorityCapable": lp,
                  "premiumIO": True, "supportedComputeTypes": ["AmlCompute",
                                                               "ComputeInstance"]}
                 for n, (f, c, g, m, lp) in VM_SIZES.items()]
        return self._json(200, {"amlCompute": sizes})

    def _usages(self, location: str) -> tuple[int, dict[str, str], bytes]:
        families = sorted({f for f, *_ in VM_SIZES.values()})
        value = []
        for fam in families:
            used = 0
            for ws in self.workspaces.values():
                for rec in ws.computes.values():
                    aml = rec["properties"]["properties"]
                    size = VM_SIZES.get(aml["vmSize"].upper())
                    if size and size[0] == fam and aml["vmPriority"] == "Dedicated":
                        used += aml["currentNodeCount"] * size[1]
            value.append({
                "id": f"/subscriptions/{self.subscription_id}/providers/{ML_PROVIDER}/locations/"
                      f"{location}/usages/{fam}",
                "type": f"{ML_PROVIDER}/vmFamily", "unit": "Count", "currentValue": used,
                "limit": self.vcpu_quota.get(fam, 24),
                "name": {"value": fam, "localizedValue": fam}})
        return self._json(200, {"value": value})

    # -- AML region host ------------------------------------------------------------------------

    def _aml(self, call: Call) -> tuple[int, dict[str, str], bytes]:
        p = call.path.rstrip("/")
        base = f"https://{call.host}"
        if p == "/discovery":
            return self._json(200, {
                "api": base, "catalog": base, "experimentation": base, "gallery": base,
                "history": base, "hyperdrive": base, "labeling": base, "modelmanagement": base,
                "pipelines": base, "studio": "https://ml.azure.com"})
        ws_re = (r"/subscriptions/([^/]+)/resourceGroups/([^/]+)/providers/"
                 + ML_PROVIDER + r"/workspaces/([^/]+)")
        if RunHistory.serves(p):
            m = re.match(r"^/[a-z]+/v[12]\.0" + ws_re, p, re.I)
            if m:
                ws = self._workspace(m.group(2), m.group(3))
                service = p.split("/")[1]
                version = p.split("/")[2]
                return self.history.handle(call, ws, f"/{service}/{version}{p[m.end():]}")
        m = re.match(r"^/rp/workspaces" + ws_re + r"/computes(?:/([^/]+))?$", p, re.I)
        if m and call.method == "GET":
            self._api_version(call, COMPUTE_API_VERSIONS)
            ws = self._workspace(m.group(2), m.group(3))
            if m.group(4):
                return self._compute_get(ws, urllib.parse.unquote(m.group(4)))
            return self._json(200, {"value": list(ws.computes.values())})
        m = re.match(r"^/datastore/v1\.0" + ws_re + r"/(datastores|default)(?:/([^/]+))?$", p,
                     re.I)
        if m:
            ws = self._workspace(m.group(2), m.group(3))
            name = urllib.parse.unquote(m.group(5)) if m.group(5) else None
            return self._datastores(call, ws, m.group(4), name)
        raise ServiceError(404, "NotFound", f"No route for {call.method} {p}")

    # -- datastores ------------------------------------------------------------------------------

    def _datastore_record(self, name: str, kind: str, account: str, container: str,
                          credential_type: str, credential: str | None,
                          endpoint: str | None) -> dict[str, Any]:
        return {"name": name, "dataStoreType": kind, "hasBeenValidated": True, "tags": {},
                "azureStorageSection": {
                    "accountName": account, "containerName": container,
                    "endpoint": endpoint or "core.windows.net", "protocol": "https",
                    "credentialType": credential_type, "credential": credential,
                    "isSas": credential_type == "Sas", "blobCacheTimeout": 0,
                    "subscriptionId": self.subscription_id, "resourceGroup": None}}

    def _public_datastore(self, rec: dict[str, Any], include_secret: bool) -> dict[str, Any]:
        out = json.loads(json.dumps(rec))
        section = out["azureStorageSection"]
        secret = section.pop("credential")
        if include_secret and secret:
            section["credential"] = secret
            section["accountKey" if section["credentialType"] == "AccountKey" else
                    "sasToken"] = secret
        return out

    def _datastores(self, call: Call, ws: Workspace, kind: str,
                    name: str | None) -> tuple[int, dict[str, str], bytes]:
        if kind == "default":
            if call.method == "GET" and name is None:
                rec = ws.datastores[ws.default_datastore]
                return self._json(200, self._public_datastore(rec, True))
            if call.method == "PUT" and name:
                if name not in ws.datastores:
                    raise ServiceError(404, "NotFound", f"Datastore {name} not found")
                ws.default_datastore = name
                return 200, {"Content-Length": "0"}, b""
        elif name is None and call.method == "GET":
            names = sorted(ws.datastores)
            count = int(call.query.get("count") or 100)
            start = int(call.query.get("continuationToken") or 0)
            page = names[start:start + count]
            token = str(start + count) if start + count < len(names) else None
            include = call.query.get("includeSecret", "false").lower() == "true"
            return self._json(200, {"value": [self._public_datastore(ws.datastores[n], include)
                                              for n in page], "continuationToken": token})
        elif name is None and call.method == "POST":
            return self._datastore_write(call, ws, create=True)
        elif name and call.method == "PUT":
            return self._datastore_write(call, ws, create=False, name=name)
        elif name and call.method == "GET":
            rec = ws.datastores.get(name.lower())
            if rec is None:
                raise ServiceError(404, "NotFound",
                                   f"DataStore {name} does not exist in workspace {ws.name}.")
            return self._json(200, self._public_datastore(rec, True))
        elif name and call.method == "DELETE":
            if name.lower() not in ws.datastores:
                raise ServiceError(404, "NotFound", f"DataStore {name} does not exist.")
            if name.lower() == ws.default_datastore:
                raise ServiceError(400, "BadRequest", "Cannot delete the default datastore.")
            del ws.datastores[name.lower()]
            return 200, {"Content-Length": "0"}, b""
        raise ServiceError(404, "NotFound", f"No route for {call.method} {call.path}")

    def _datastore_write(self, call: Call, ws: Workspace, create: bool,
                         name: str | None = None) -> tuple[int, dict[str, str], bytes]:
        dto = call.json()
        dname = (dto.get("name") or name or "").lower()
        if not re.fullmatch(r"[a-z0-9_]{1,255}", dname):
            raise ServiceError(400, "BadRequest", "Datastore name can only contain alphanumeric "
                               "characters and underscores.")
        if create and dname in ws.datastores:
            # The SDK recognises this message and retries as an update when overwrite=True.
            raise ServiceError(400, "UserError",
                               "Another datastore with the same name already exists in the "
                               "workspace.")
        if not create and dname not in ws.datastores:
            raise ServiceError(404, "NotFound", f"DataStore {dname} does not exist.")
        kind = dto.get("dataStoreType")
        section = dto.get("azureStorageSection") or {}
        if kind not in ("AzureBlob", "AzureFile") or not section.get("accountName"):
            raise ServiceError(400, "BadRequest", "Only AzureBlob and AzureFile are modelled")
        ctype = section.get("credentialType") or "None"
        secret = section.get("credential")
        rec = self._datastore_record(dname, kind, section["accountName"],
                                     section.get("containerName") or "", ctype, secret,
                                     section.get("endpoint"))
        rec["azureStorageSection"]["protocol"] = section.get("protocol") or "https"
        ws.datastores[dname] = rec
        return 200, {"Content-Length": "0"}, b""

    # -- blob storage -----------------------------------------------------------------------------

    def _blob(self, call: Call) -> tuple[int, dict[str, str], bytes]:
        account = call.host[: -len(BLOB_HOST_SUFFIX)]
        if account not in self.account_keys:
            raise ServiceError(404, "AccountNotFound", f"Storage account {account} not found")
        self._check_shared_key(call, account)
        parts = call.path.lstrip("/").split("/", 1)
        container = urllib.parse.unquote(parts[0])
        blobs = self.containers.get((account, container))
        if blobs is None:
            raise ServiceError(404, "ContainerNotFound", "The specified container does not exist.")
        if len(parts) == 1 or not parts[1]:
            if call.query.get("restype") == "container" and call.query.get("comp") == "list":
                return self._list_blobs(call, blobs)
            raise ServiceError(400, "UnsupportedQueryParameter", "Only list is modelled")
        name = urllib.parse.unquote(parts[1])
        comp = call.query.get("comp")
        if call.method == "PUT" and comp == "block":
            block_id = call.query["blockid"]
            self.uncommitted_blocks.setdefault((account, container, name), {})[block_id] = \
                call.body
            return 201, self._blob_headers(None), b""
        if call.method == "PUT" and comp == "blocklist":
            staged = self.uncommitted_blocks.pop((account, container, name), {})
            ids = re.findall(r"<(?:Latest|Uncommitted|Committed)>([^<]+)</", call.body.decode())
            missing = [i for i in ids if i not in staged]
            if missing:
                raise ServiceError(400, "InvalidBlockList", "The specified block list is invalid.")
            data = b"".join(staged[i] for i in ids)
            blob = self._store_blob(blobs, name, data, call, md5=None)
            return 201, self._blob_headers(blob), b""
        if call.method == "PUT" and comp == "metadata":
            blob = self._existing_blob(blobs, name)
            blob.metadata = self._metadata(call)
            blob.etag = f'"0x{uuid.uuid4().hex[:15].upper()}"'
            return 200, self._blob_headers(blob), b""
        if call.method == "PUT" and comp is None:
            if call.headers.get("x-ms-blob-type") != "BlockBlob":
                raise ServiceError(400, "InvalidHeaderValue", "Only block blobs are modelled")
            md5 = base64.b64encode(hashlib.md5(call.body).digest()).decode()
            sent = call.headers.get("content-md5")
            if sent and sent != md5:
                raise ServiceError(400, "Md5Mismatch", "The MD5 value specified in the request "
                                   "did not match with the MD5 value calculated by the server.")
            blob = self._store_blob(blobs, name, call.body, call, md5=md5)
            return 201, self._blob_headers(blob), b""
        if call.method in ("GET", "HEAD") and comp is None:
            blob = self._existing_blob(blobs, name)
            headers = self._blob_headers(blob)
            headers.update({"Content-Type": blob.content_type, "x-ms-blob-type": "BlockBlob"})
            headers.update({f"x-ms-meta-{k}": v for k, v in blob.metadata.items()})
            data, status = blob.data, 200
            wanted = re.fullmatch(r"bytes=(\d+)-(\d*)",
                                  call.headers.get("x-ms-range") or call.headers.get("range") or "")
            if wanted:
                first = int(wanted.group(1))
                last = min(int(wanted.group(2) or len(data) - 1), len(data) - 1)
                if first >= len(data) and data:
                    raise ServiceError(416, "InvalidRange",
                                       "The range specified is invalid for the current size.")
                headers["Content-Range"] = f"bytes {first}-{last}/{len(data)}"
                data, status = data[first:last + 1], 206
            headers["Content-Length"] = str(len(data))
            return status, headers, b"" if call.method == "HEAD" else data
        if call.method == "DELETE":
            self._existing_blob(blobs, name)
            del blobs[name]
            return 202, {"x-ms-delete-type-permanent": "true"}, b""
        raise ServiceError(400, "UnsupportedOperation", f"{call.method} {comp} not modelled")

    @staticmethod
    def _existing_blob(blobs: dict[str, Blob], name: str) -> Blob:
        blob = blobs.get(name)
        if blob is None:
            raise ServiceError(404, "BlobNotFound", "The specified blob does not exist.")
        return blob

    @staticmethod
    def _metadata(call: Call) -> dict[str, str]:
        return {k[len("x-ms-meta-"):]: v for k, v in call.headers.items()
                if k.startswith("x-ms-meta-")}

    def _store_blob(self, blobs: dict[str, Blob], name: str, data: bytes, call: Call,
                    md5: str | None) -> Blob:
        # Put Block List keeps an MD5 only when the client sends x-ms-blob-content-md5.
        md5 = md5 or call.headers.get("x-ms-blob-content-md5")
        blob = Blob(data, self._metadata(call), md5,
                    call.headers.get("x-ms-blob-content-type") or "application/octet-stream",
                    f'"0x{uuid.uuid4().hex[:15].upper()}"', formatdate(usegmt=True))
        blobs[name] = blob
        return blob

    @staticmethod
    def _blob_headers(blob: Blob | None) -> dict[str, str]:
        headers = {"x-ms-request-server-encrypted": "true", "x-ms-version": "2021-08-06"}
        if blob is not None:
            headers.update({"ETag": blob.etag, "Last-Modified": blob.last_modified})
            if blob.content_md5:
                headers["Content-MD5"] = blob.content_md5
        return headers

    def _list_blobs(self, call: Call, blobs: dict[str, Blob]) -> tuple[int, dict[str, str], bytes]:
        prefix = call.query.get("prefix", "")
        names = sorted(n for n in blobs if n.startswith(prefix))
        limit = int(call.query.get("maxresults") or 5000)
        start = names.index(call.query["marker"]) if call.query.get("marker") in names else 0
        page, rest = names[start:start + limit], names[start + limit:]
        include_meta = "metadata" in call.query.get("include", "")
        items = []
        for n in page:
            b = blobs[n]
            meta = "".join(f"<{k}>{escape(v)}</{k}>" for k, v in b.metadata.items())
            md5 = f"<Content-MD5>{b.content_md5}</Content-MD5>" if b.content_md5 else \
                "<Content-MD5 />"
            items.append(
                f"<Blob><Name>{escape(n)}</Name><Properties>"
                f"<Last-Modified>{b.last_modified}</Last-Modified><Etag>{b.etag}</Etag>"
                f"<Content-Length>{len(b.data)}</Content-Length>"
                f"<Content-Type>{escape(b.content_type)}</Content-Type>{md5}"
                f"<BlobType>BlockBlob</BlobType><AccessTier>Hot</AccessTier>"
                f"<AccessTierInferred>true</AccessTierInferred>"
                f"<LeaseStatus>unlocked</LeaseStatus><LeaseState>available</LeaseState>"
                f"<ServerEncrypted>true</ServerEncrypted></Properties>"
                + (f"<Metadata>{meta}</Metadata>" if include_meta else "") + "</Blob>")
        marker = f"<NextMarker>{escape(rest[0])}</NextMarker>" if rest else "<NextMarker />"
        body = ('<?xml version="1.0" encoding="utf-8"?><EnumerationResults '
                f'ServiceEndpoint="https://{call.host}/" ContainerName='
                f'"{escape(call.path.strip("/"))}"><Prefix>{escape(prefix)}</Prefix>'
                f"<MaxResults>{limit}</MaxResults><Blobs>{''.join(items)}</Blobs>{marker}"
                "</EnumerationResults>")
        return 200, {"Content-Type": "application/xml", "x-ms-version": "2021-08-06"}, \
            body.encode()

    def _check_shared_key(self, call: Call, account: str) -> None:
        """Verify a Shared Key signature like the storage service does (SAS is accepted as is)."""
        if "sig" in call.query:
            return
        auth = call.headers.get("authorization", "")
        if not auth.startswith(f"SharedKey {account}:"):
            raise ServiceError(403, "AuthenticationFailed",
                               "Server failed to authenticate the request.")
        expected = shared_key_signature(self.account_keys[account], account, call)
        if not hmac.compare_digest(auth.split(":", 1)[1], expected):
            raise ServiceError(403, "AuthenticationFailed",
                               "The MAC signature found in the HTTP request is not the same as "
                               "any computed signature.")


def shared_key_signature(key: str, account: str, call: Call) -> str:
    """The Shared Key string-to-sign of the Blob service (version 2009-09-19 and later)."""
    h = call.headers
    length = h.get("content-length", "")
    if length == "0":
        length = ""
    standard = [call.method, h.get("content-encoding", ""), h.get("content-language", ""),
                length, h.get("content-md5", ""), h.get("content-type", ""), "",
                h.get("if-modified-since", ""), h.get("if-match", ""), h.get("if-none-match", ""),
                h.get("if-unmodified-since", ""), h.get("range", "")]
    ms = sorted((k, v.strip()) for k, v in h.items() if k.startswith("x-ms-"))
    canon_headers = "".join(f"{k}:{v}\n" for k, v in ms)
    resource = f"/{account}{urllib.parse.quote(urllib.parse.unquote(call.raw_path))}"
    params = sorted((k.lower(), v) for k, v in call.raw_query)
    grouped: dict[str, list[str]] = {}
    for k, v in params:
        grouped.setdefault(k, []).append(v)
    canon_resource = resource + "".join(f"\n{k}:{','.join(sorted(vs))}"
                                        for k, vs in sorted(grouped.items()))
    to_sign = "\n".join(standard) + "\n" + canon_headers + canon_resource
    digest = hmac.new(base64.b64decode(key), to_sign.encode("utf-8"), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


# --- HTTP plumbing ----------------------------------------------------------------------------


def _make_handler(service: FakeAzure) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "amlctl-fake-azure"
        disable_nagle_algorithm = True  # else every small response waits ~40 ms for an ACK

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                body = self._read_chunked()
            split = urllib.parse.urlsplit(self.path)
            raw_query = urllib.parse.parse_qsl(split.query, keep_blank_values=True)
            host = (self.headers.get("Host") or "").split(":")[0].lower()
            call = Call(self.command, host, urllib.parse.unquote(split.path),
                        dict(raw_query), body, {k.lower(): v for k, v in self.headers.items()},
                        raw_path=split.path, raw_query=raw_query)
            try:
                status, headers, data = service.handle(call)
            except ConnectionResetError:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            call.status = status
            self.send_response(status)
            headers.setdefault("x-ms-request-id", str(uuid.uuid4()))
            headers.setdefault("Date", formatdate(usegmt=True))
            if "Content-Length" not in headers:
                headers["Content-Length"] = str(len(data))
            for k, v in headers.items():
                self.send_header(k, v)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _read_chunked(self) -> bytes:
            out = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return out
                out += self.rfile.read(size)
                self.rfile.readline()

        do_GET = do_PUT = do_POST = do_PATCH = do_DELETE = do_HEAD = _serve

    return Handler


# --- the network edge -------------------------------------------------------------------------


def is_azure_host(host: str) -> bool:
    """True for the public Azure names this fake answers for."""
    host = host.lower().rstrip(".")
    return host in (ARM_HOST, AAD_HOST) or host.endswith(
        (AML_HOST_SUFFIX, BLOB_HOST_SUFFIX, FILE_HOST_SUFFIX))


class NonLoopbackConnection(AssertionError):
    """A test tried to open a connection to an address outside the loopback range."""


def _is_loopback(address: Any, family: int) -> bool:
    if family not in (socket.AF_INET, socket.AF_INET6):
        return True  # unix sockets and the like never leave the machine
    host = address[0] if isinstance(address, tuple) else address
    try:
        return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
    except ValueError:
        return False  # a name: connect() would resolve it itself, refuse to guess


@contextmanager
def route_hosts(port: int, blob_port: int | None = None) -> Iterator[list[tuple[Any, ...]]]:
    """Resolve Azure host names to the fake (blob hosts to `blob_port`, Azurite, when given)
    and refuse any non-loopback connection.

    The SDK keeps its real URLs (https://management.azure.com/...); only name resolution is
    replaced, which is where the network edge begins. Yields the list of refused addresses so a
    test can assert none was attempted.
    """
    refused: list[tuple[Any, ...]] = []
    real_getaddrinfo = socket.getaddrinfo
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def getaddrinfo(host: Any, port_: Any, *args: Any, **kwargs: Any) -> Any:
        name = host.decode() if isinstance(host, bytes) else host
        if isinstance(name, str) and is_azure_host(name):
            target = port
            if blob_port is not None and name.lower().rstrip(".").endswith(BLOB_HOST_SUFFIX):
                target = blob_port
            return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "",
                     ("127.0.0.1", target))]
        return real_getaddrinfo(host, port_, *args, **kwargs)

    def guard(sock: socket.socket, address: Any) -> None:
        if not _is_loopback(address, sock.family):
            refused.append((sock.family, address))
            raise NonLoopbackConnection(f"test tried to connect to {address!r}: only loopback "
                                        "addresses are allowed")

    def connect(self: socket.socket, address: Any) -> None:
        guard(self, address)
        return real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        guard(self, address)
        return real_connect_ex(self, address)

    socket.getaddrinfo = getaddrinfo  # type: ignore[assignment]
    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    try:
        yield refused
    finally:
        socket.getaddrinfo = real_getaddrinfo  # type: ignore[assignment]
        socket.socket.connect = real_connect  # type: ignore[method-assign]
        socket.socket.connect_ex = real_connect_ex  # type: ignore[method-assign]
