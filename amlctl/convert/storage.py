"""Batch AI mount volumes as Azure ML datastores, and Batch AI paths as datastore paths.

Batch AI mounted storage on the nodes (cluster volumes under $AZ_BATCHAI_MOUNT_ROOT, job
volumes under $AZ_BATCHAI_JOB_MOUNT_ROOT) and scripts read files there. Azure ML mounts
nothing by itself: a run names datastore paths as inputs. This module registers each Azure
file share and blob container once as a datastore and turns a mount path into
(datastore, path inside it).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Literal

from amlctl.convert import names
from amlctl.convert.report import Outcome, Report
from amlctl.convert.sources import PathPart, SourceFile, placeholder

JOB_MOUNT_ROOT = "AZ_BATCHAI_JOB_MOUNT_ROOT"
CLUSTER_MOUNT_ROOT = "AZ_BATCHAI_MOUNT_ROOT"
STORAGE_ACCOUNT_VAR = "AZURE_BATCHAI_STORAGE_ACCOUNT"
STORAGE_KEY_VAR = "AZURE_BATCHAI_STORAGE_KEY"
DEFAULT_DATASTORE = "default"

# "$AZ_BATCHAI_JOB_MOUNT_ROOT/rest", "${AZ_BATCHAI_MOUNT_ROOT}/rest"
_MOUNT_PATH = re.compile(
    r"^\$(?:\{(?P<braced>AZ_BATCHAI_(?:JOB_)?MOUNT_ROOT)\}|(?P<plain>AZ_BATCHAI_(?:JOB_)?MOUNT_ROOT)"
    r"(?![A-Za-z0-9_]))(?P<rest>/.*)?$"
)
_FILE_URL = re.compile(r"^https?://(?P<account>[^./]+)\.file\.[^/]+/(?P<share>[^/?#]+)")

MountKind = Literal["azure_file", "azure_blob", "file_server", "unmanaged"]


@dataclass
class Datastore:
    """A datastore the conversion may write, with where it came from."""

    name: str
    type: Literal["azure_file", "azure_blob"]
    account: str  # as written in the input (may be an az batchai placeholder)
    container: str  # blob container or file share name
    key_env: str | None  # environment variable the account key is read from
    origin: str  # "FILE FIELD" of the first mount that named it
    wanted: bool = False  # written to the manifest only when something uses it

    @property
    def account_value(self) -> str:
        """The manifest value of account_name: the placeholder becomes an env() lookup."""
        var = placeholder(self.account)
        if var:
            return f"{{{{ env('{var}', 'changeme') }}}}"
        return self.account


@dataclass
class Mount:
    """One mounted volume of a cluster or a job."""

    source: str
    field: str  # path of the volume entry in its file
    kind: MountKind
    rel_path: str
    datastore: Datastore | None
    description: str
    uses: list[str] = field(default_factory=list)  # manifest paths that read data through it
    code_uses: list[str] = field(default_factory=list)  # source directories copied from it
    other_uses: list[str] = field(default_factory=list)  # input fields naming it otherwise


@dataclass(frozen=True)
class Location:
    """A Batch AI path under a mount root, resolved as far as the known mounts allow."""

    root_var: str
    rel: str  # path below the mount root ("scripts/tensorflow")
    mount: Mount | None
    inner: str  # path inside the mount's storage ("tensorflow"), "." for its root

    @property
    def datastore(self) -> Datastore | None:
        """The datastore holding the path, when the mount is an Azure file share or container."""
        return self.mount.datastore if self.mount else None


class Storage:
    """Every datastore of one conversion, shared by the clusters and jobs that mount it."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self._stores: dict[tuple[str, str, str], Datastore] = {}
        self.uses_placeholders = False  # some wanted datastore reads az batchai's variables

    @property
    def datastores(self) -> list[Datastore]:
        """The datastores something uses, in the order first seen."""
        return [d for d in self._stores.values() if d.wanted]

    def read_mounts(self, src: SourceFile, *parts: PathPart) -> list[Mount]:
        """The volumes of the `mountVolumes` object at `parts` of `src`."""
        volumes = src.get(*parts)
        if not isinstance(volumes, dict):
            return []
        mounts: list[Mount] = []
        for index, entry in enumerate(_list(volumes.get("azureFileShares"))):
            mounts.append(self._file_share(src, (*parts, "azureFileShares", index), entry))
        for index, entry in enumerate(_list(volumes.get("azureBlobFileSystems"))):
            mounts.append(self._blob(src, (*parts, "azureBlobFileSystems", index), entry))
        for index, entry in enumerate(_list(volumes.get("fileServers"))):
            server = entry.get("fileServer", {}) if isinstance(entry, dict) else {}
            server_id = server.get("id", "") if isinstance(server, dict) else ""
            mounts.append(Mount(src.name, src.field(*parts, "fileServers", index), "file_server",
                                _rel(entry), None,
                                f"Batch AI file server {server_id.rsplit('/', 1)[-1]}"))
        for index, entry in enumerate(_list(volumes.get("unmanagedFileSystems"))):
            command = entry.get("mountCommand", "") if isinstance(entry, dict) else ""
            mounts.append(Mount(src.name, src.field(*parts, "unmanagedFileSystems", index),
                                "unmanaged", _rel(entry), None,
                                f"file system mounted with `{command}`"))
        return mounts

    def _file_share(self, src: SourceFile, parts: tuple[PathPart, ...], entry: Any) -> Mount:
        entry = entry if isinstance(entry, dict) else {}
        url = str(entry.get("azureFileUrl", ""))
        match = _FILE_URL.match(url)
        account = str(entry.get("accountName") or (match.group("account") if match else ""))
        share = match.group("share") if match else url.rstrip("/").rsplit("/", 1)[-1]
        store = self._store("azure_file", account, share, src, parts, entry)
        return Mount(src.name, src.field(*parts), "azure_file", _rel(entry), store,
                     f"Azure file share {share}")

    def _blob(self, src: SourceFile, parts: tuple[PathPart, ...], entry: Any) -> Mount:
        entry = entry if isinstance(entry, dict) else {}
        account = str(entry.get("accountName", ""))
        container = str(entry.get("containerName", ""))
        store = self._store("azure_blob", account, container, src, parts, entry)
        return Mount(src.name, src.field(*parts), "azure_blob", _rel(entry), store,
                     f"blob container {container}")

    def _store(self, kind: Literal["azure_file", "azure_blob"], account: str, container: str,
               src: SourceFile, parts: tuple[PathPart, ...], entry: dict[str, Any]) -> Datastore:
        key = (kind, account.lower(), container)
        if key in self._stores:
            return self._stores[key]
        taken = [d.name for d in self._stores.values()]
        name = names.unique(names.sanitise(container or kind, names.DATASTORE), taken,
                            names.DATASTORE)
        store = Datastore(name, kind, account, container, None, f"{src.name} {src.field(*parts)}")
        store.key_env = _key_env(store, entry)
        self._stores[key] = store
        return store

    def report_mounts(self, mounts: list[Mount], src: SourceFile,
                      prefix: tuple[PathPart, ...], cluster_level: bool) -> None:
        """Report every mount of one mountVolumes block, each at its place in its list."""
        list_of = {"azure_file": "azureFileShares", "azure_blob": "azureBlobFileSystems",
                   "file_server": "fileServers", "unmanaged": "unmanagedFileSystems"}
        counters: dict[str, int] = {}
        for mount in mounts:
            key = list_of[mount.kind]
            index = counters.get(key, 0)
            counters[key] = index + 1
            self.report_mount(mount, src, (*prefix, key, index), cluster_level)

    def report_mount(self, mount: Mount, src: SourceFile, parts: tuple[PathPart, ...],
                     cluster_level: bool) -> None:
        """Say what became of one mount entry (call once its uses are known)."""
        entry = src.get(*parts)
        entry = entry if isinstance(entry, dict) else {}
        store = mount.datastore
        where = f"${CLUSTER_MOUNT_ROOT if cluster_level else JOB_MOUNT_ROOT}/{mount.rel_path}"
        if store is None:
            self.report.add(src.name, mount.field, Outcome.ACTION, None,
                            f"{mount.description} at {where}: Azure ML mounts only Azure "
                            "storage through datastores; copy the data to a blob container "
                            "or file share and register it as a datastore")
            return
        target = f"datastores.{store.name}"
        if cluster_level or mount.uses:
            store.wanted = True
            code = (f"; the code under it goes to {', '.join(mount.code_uses)}"
                    if mount.code_uses else "")
            account = (f" (account from ${STORAGE_ACCOUNT_VAR}, key from ${store.key_env}, as "
                       "az batchai read them)" if placeholder(store.account) else "")
            self.report.add(src.name, mount.field, Outcome.MAPPED, target,
                            f"{mount.description}{account}; paths under {where} become run "
                            "inputs from this datastore (Azure ML mounts nothing on the nodes "
                            f"itself){code}")
        elif mount.code_uses:
            self.report.add(src.name, mount.field, Outcome.ACTION, ", ".join(mount.code_uses),
                            f"{mount.description} held the code under {where}: copy that "
                            "folder beside the manifest (Azure ML snapshots the source directory)")
            return
        elif mount.other_uses:
            self.report.add(src.name, mount.field, Outcome.DROPPED, None,
                            f"{mount.description} at {where}: only "
                            f"{', '.join(mount.other_uses)} used it (see there)")
            return
        else:
            self.report.add(src.name, mount.field, Outcome.DROPPED, None,
                            f"{mount.description}: nothing in the job reads from {where} "
                            "(Azure ML keeps logs and outputs with the run)")
            return
        self._report_credentials(src, parts, entry, store, target)
        for option in ("fileMode", "directoryMode", "mountOptions"):
            if option in entry:
                self.report.add(src.name, src.field(*parts, option), Outcome.DROPPED, None,
                                "Azure ML chooses mount options and permissions itself")

    def _report_credentials(self, src: SourceFile, parts: tuple[PathPart, ...],
                            entry: dict[str, Any], store: Datastore, target: str) -> None:
        # The az batchai placeholders are one action for the whole conversion (set the two
        # variables az batchai read); only keys of real accounts are an action per mount.
        found = False
        for key in ("credentials", "credentialsInfo"):
            creds = entry.get(key)
            if not isinstance(creds, dict):
                continue
            found = True
            legacy = " (legacy key credentialsInfo)" if key == "credentialsInfo" else ""
            if "accountKey" in creds:
                var = placeholder(creds["accountKey"])
                if var:
                    self.uses_placeholders = True
                    self.report.add(src.name, src.field(*parts, key, "accountKey"),
                                    Outcome.MAPPED, f"{target}.account_key",
                                    f"the <{var}> placeholder{legacy}: read from {var}")
                else:
                    self.report.add(src.name, src.field(*parts, key, "accountKey"),
                                    Outcome.ACTION, f"{target}.account_key",
                                    f"the key in the file is not copied{legacy}: set "
                                    f"{store.key_env} in the environment (secret_env)")
            if "accountKeySecretReference" in creds:
                ref = creds["accountKeySecretReference"]
                url = ref.get("secretUrl", "") if isinstance(ref, dict) else ""
                self.report.add(src.name, src.field(*parts, key, "accountKeySecretReference"),
                                Outcome.ACTION, f"{target}.account_key",
                                f"Key Vault secret {url}: export it as {store.key_env} "
                                "before plan and apply (secret_env)")
        if placeholder(store.account):
            self.uses_placeholders = True
        elif not found:
            self.report.add(src.name, src.field(*parts), Outcome.ACTION,
                            f"{target}.account_key",
                            f"no account key in the file: set {store.key_env} in the "
                            "environment (secret_env), or remove account_key to use the "
                            "workspace's identity")

    def datastore_map(self) -> dict[str, dict[str, str]]:
        """The `datastores:` section as plain data (secrets as secret_env references)."""
        out: dict[str, dict[str, str]] = {}
        for store in self.datastores:
            body = {"type": store.type, "account_name": store.account_value}
            body["container_name" if store.type == "azure_blob" else "share_name"] = (
                store.container)
            if store.key_env:
                body["account_key"] = f"{{{{ secret_env('{store.key_env}') }}}}"
            out[store.name] = body
        return out


def locate(path: str, job_mounts: list[Mount], cluster_mounts: list[Mount]) -> Location | None:
    """Where a `$AZ_BATCHAI_*MOUNT_ROOT/...` path lives; None for any other path."""
    match = _MOUNT_PATH.match(path.strip())
    if not match:
        return None
    root = match.group("braced") or match.group("plain")
    rel = "/".join(p for p in (match.group("rest") or "").split("/") if p and p != ".")
    mounts = job_mounts if root == JOB_MOUNT_ROOT else cluster_mounts
    for mount in sorted(mounts, key=lambda m: -len(m.rel_path)):
        if mount.rel_path and (rel == mount.rel_path or rel.startswith(mount.rel_path + "/")):
            inner = rel[len(mount.rel_path):].strip("/") or "."
            return Location(root, rel, mount, inner)
    return Location(root, rel, None, rel or ".")


def _key_env(store: Datastore, entry: dict[str, Any]) -> str:
    for key in ("credentials", "credentialsInfo"):
        creds = entry.get(key)
        if isinstance(creds, dict):
            var = placeholder(creds.get("accountKey"))
            if var:
                return var
    if placeholder(store.account):
        # az batchai filled job mounts in with the key from this variable.
        return STORAGE_KEY_VAR
    return f"{store.name.upper()}_ACCOUNT_KEY"


def _rel(entry: Any) -> str:
    if isinstance(entry, dict):
        return str(entry.get("relativeMountPath", "")).strip("/")
    return ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
