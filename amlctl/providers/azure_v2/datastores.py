"""Datastores through SDK v2: `AzureBlobDatastore` / `AzureFileDatastore` with an account key or
SAS token, read back in the v1 backend's vocabulary (secrets only as fingerprints)."""

from __future__ import annotations

from typing import Any

from amlctl.errors import ProviderError
from amlctl.providers.azure.datastores import DEFAULT_ENDPOINT, UPDATABLE, read_back
from amlctl.providers.azure.retry import DEFAULT_POLICY, RetryPolicy, call
from amlctl.providers.azure_v2 import sdk

__all__ = ["UPDATABLE", "V2Datastores", "normalise"]

TYPES = {"azureblob": "azure_blob", "azurefile": "azure_file"}


def kind_of(ds: Any) -> str | None:
    """azure_blob / azure_file for the SDK's DatastoreType (an enum or its value)."""
    value = str(getattr(ds.type, "value", ds.type))
    return TYPES.get(value.replace("_", "").lower())


def _secret(ds: Any, field: str) -> str | None:
    return getattr(ds.credentials, field, None) if ds.credentials is not None else None


def normalise(ds: Any, key: bytes | None = None) -> dict[str, Any] | None:
    """A datastore in manifest vocabulary (secrets fingerprinted with the stack's `key`, as
    the v1 backend does); None for kinds amlctl does not manage."""
    kind = kind_of(ds)
    if kind is None:
        return None
    account_key, sas = _secret(ds, "account_key"), _secret(ds, "sas_token")
    container = ds.container_name if kind == "azure_blob" else ds.file_share_name
    endpoint = ds.endpoint if kind == "azure_blob" else None
    return read_back(kind, ds.account_name, account_key, sas, container, endpoint, key)


def to_entity(name: str, attrs: dict[str, Any], secrets: dict[str, str]) -> Any:
    """The SDK entity for manifest attributes (no network)."""
    entities = sdk.load().entities
    key, sas = secrets.get("account_key"), secrets.get("sas_token")
    credentials = (entities.AccountKeyConfiguration(account_key=key) if key else
                   entities.SasTokenConfiguration(sas_token=sas) if sas else None)
    if attrs["type"] == "azure_blob":
        return entities.AzureBlobDatastore(
            name=name, account_name=attrs["account_name"],
            container_name=attrs["container_name"],
            endpoint=attrs.get("endpoint") or DEFAULT_ENDPOINT, credentials=credentials)
    if attrs["type"] == "azure_file":
        return entities.AzureFileDatastore(
            name=name, account_name=attrs["account_name"], file_share_name=attrs["share_name"],
            endpoint=DEFAULT_ENDPOINT, credentials=credentials)
    raise ProviderError(f"datastore.{name}: type {attrs['type']!r} is not supported by the "
                        "azure-v2 backend")


class V2Datastores:
    """The datastores of one workspace, through `ml_client.datastores`."""

    def __init__(self, client: Any, policy: RetryPolicy = DEFAULT_POLICY,
                 fingerprint_key: bytes | None = None) -> None:
        self.client = client
        self.policy = policy
        self.fingerprint_key = fingerprint_key

    def read_all(self) -> dict[str, dict[str, Any]]:
        """name -> attributes of every blob or file datastore (secrets as fingerprints)."""
        found = call("listing datastores", lambda: list(self.client.datastores.list(
            include_secrets=True)), self.policy)
        out = {}
        for ds in found:
            attrs = normalise(ds, self.fingerprint_key)
            if attrs is not None:
                out[ds.name] = attrs
        return out

    def get(self, name: str) -> Any | None:
        """The datastore with its secrets, or None."""
        def fetch() -> Any | None:
            try:
                return self.client.datastores.get(name, include_secrets=True)
            except Exception as e:
                if sdk.is_not_found(e):
                    return None
                raise

        return call(f"reading datastore {name}", fetch, self.policy)

    def default(self) -> Any:
        """The workspace's default datastore, with its secrets."""
        return call("reading the default datastore", lambda: self.client.datastores.get_default(
            include_secrets=True), self.policy)

    def register(self, name: str, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        """Create or replace the datastore definition (a PUT: v2's one write path)."""
        entity = to_entity(name, attrs, secrets)
        call(f"registering datastore {name}",
             lambda: self.client.datastores.create_or_update(entity), self.policy)

    def unregister(self, name: str) -> None:
        """Remove the registration (the storage and its data stay). Absent: nothing to do."""
        def delete() -> None:
            try:
                self.client.datastores.delete(name)
            except Exception as e:
                if not sdk.is_not_found(e):
                    raise

        call(f"unregistering datastore {name}", delete, self.policy)


def container_client(ds: Any, account_key: str | None = None, sas_token: str | None = None
                     ) -> Any:
    """An azure-storage-blob ContainerClient of a blob datastore, with the given key or SAS
    (the manifest's), else the registered one."""
    from azure.storage.blob import ContainerClient

    if kind_of(ds) != "azure_blob":
        raise ProviderError(f"datastore {ds.name!r} is not a blob container; the azure-v2 "
                            "backend uploads to blob datastores only")
    key, sas = _secret(ds, "account_key"), _secret(ds, "sas_token")
    if account_key or sas_token:
        key, sas = account_key, sas_token
    endpoint = ds.endpoint or DEFAULT_ENDPOINT
    url = f"{ds.protocol or 'https'}://{ds.account_name}.blob.{endpoint}"
    credential: Any = {"account_name": ds.account_name, "account_key": key} if key else sas
    # one retry layer: ours (the storage SDK would otherwise retry each request on its own)
    return ContainerClient(url, ds.container_name, credential=credential, retry_total=0)
