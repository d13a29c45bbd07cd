"""Datastores: register blob containers and file shares, read them back without secrets.

Registration goes through the SDK's `register_azure_blob_container` / `register_azure_file_share`
with the account key or SAS token; a change re-registers with overwrite=True (the SDK's update
path). Read-back never returns a secret: only its fingerprint, so a rotated key shows as a
change without ever being printed.
"""

from __future__ import annotations

from typing import Any

from amlctl.errors import ProviderError
from amlctl.providers.azure import sdk
from amlctl.providers.azure.retry import DEFAULT_POLICY, AzureCallError, RetryPolicy, call
from amlctl.providers.base import fingerprint

DEFAULT_ENDPOINT = "core.windows.net"
# Re-registering replaces the whole definition, so every field but the type changes in place.
UPDATABLE = frozenset({"account_name", "container_name", "share_name", "account_key",
                       "sas_token", "endpoint"})
TYPES = {"AzureBlob": "azure_blob", "AzureFile": "azure_file"}


def normalise(ds: Any, key: bytes | None = None) -> dict[str, Any] | None:
    """A registered datastore in manifest vocabulary (secrets fingerprinted with the stack's
    `key`); None for kinds amlctl does not manage."""
    kind = TYPES.get(getattr(ds, "datastore_type", ""))
    if kind is None:
        return None
    credential_type = getattr(ds, "credential_type", "None")
    account_key = ds.account_key if credential_type == "AccountKey" and ds.account_key else None
    sas = ds.sas_token if credential_type == "Sas" and ds.sas_token else None
    return read_back(kind, ds.account_name, account_key, sas, ds.container_name, ds.endpoint,
                     key)


def read_back(kind: str, account_name: str, account_key: str | None, sas_token: str | None,
              container: str, endpoint: str | None, key: bytes | None) -> dict[str, Any]:
    """A datastore's attributes in manifest vocabulary, secrets as fingerprints. Both azure
    backends read back through this one rule, so switching SDKs plans no change."""
    attrs: dict[str, Any] = {"type": kind, "account_name": account_name,
                             "account_key": fingerprint(account_key, key) if account_key else None,
                             "sas_token": fingerprint(sas_token, key) if sas_token else None}
    if kind == "azure_blob":
        attrs["container_name"] = container
        attrs["endpoint"] = None if endpoint in (None, "", DEFAULT_ENDPOINT) else endpoint
    else:
        attrs["share_name"] = container
    return attrs


def normalise_all(found: dict[str, Any], key: bytes | None = None
                  ) -> dict[str, dict[str, Any]]:
    """`normalise` over a listing, leaving out the kinds amlctl does not manage."""
    out = {}
    for name, ds in found.items():
        attrs = normalise(ds, key)
        if attrs is not None:
            out[name] = attrs
    return out


class Datastores:
    """The registered datastores of one workspace."""

    def __init__(self, workspace: Any, policy: RetryPolicy = DEFAULT_POLICY,
                 fingerprint_key: bytes | None = None) -> None:
        self.ws = workspace
        self.policy = policy
        self.fingerprint_key = fingerprint_key

    def listed(self) -> dict[str, Any]:
        """name -> SDK datastore, every datastore of the workspace, in one request."""
        return dict(call("listing datastores", lambda: self.ws.datastores, self.policy))

    def read_all(self) -> dict[str, dict[str, Any]]:
        """name -> attributes of every blob or file datastore of the workspace."""
        return normalise_all(self.listed(), self.fingerprint_key)

    def get(self, name: str) -> Any | None:
        """The SDK datastore, or None when no datastore has that name."""
        s = sdk.load()
        try:
            return call(f"reading datastore {name}", lambda: s.Datastore.get(self.ws, name),
                        self.policy)
        except AzureCallError as e:
            if e.status == 404 or "not found" in str(e).lower() or "does not exist" in str(e):
                return None
            raise

    def default(self) -> Any:
        """The workspace's default datastore."""
        return call("reading the default datastore", self.ws.get_default_datastore,
                    self.policy)

    def register(self, name: str, attrs: dict[str, Any], secrets: dict[str, str],
                 overwrite: bool = True) -> dict[str, Any]:
        """Register (or with overwrite, re-register) the datastore; returns what was read back."""
        s = sdk.load()
        key, sas = secrets.get("account_key"), secrets.get("sas_token")
        if attrs["type"] == "azure_blob":
            def register() -> Any:
                return s.Datastore.register_azure_blob_container(
                    self.ws, name, container_name=attrs["container_name"],
                    account_name=attrs["account_name"], account_key=key, sas_token=sas,
                    endpoint=attrs.get("endpoint") or None, overwrite=overwrite)
        elif attrs["type"] == "azure_file":
            def register() -> Any:
                return s.Datastore.register_azure_file_share(
                    self.ws, name, file_share_name=attrs["share_name"],
                    account_name=attrs["account_name"], account_key=key, sas_token=sas,
                    overwrite=overwrite)
        else:
            raise ProviderError(f"datastore.{name}: type {attrs['type']!r} is not supported "
                                "by the azure backend")
        with sdk.captured_output():
            ds = call(f"registering datastore {name}", register, self.policy)
        return normalise(ds, self.fingerprint_key) or {}

    def unregister(self, name: str) -> None:
        """Remove the registration (the storage and its data stay). Absent: nothing to do."""
        ds = self.get(name)
        if ds is not None:
            call(f"unregistering datastore {name}", ds.unregister, self.policy)
