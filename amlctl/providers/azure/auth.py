"""Which identity talks to Azure, chosen explicitly so CI never falls into an interactive login.

Order: a service principal from AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET (or the
SDK's own AZUREML_SERVICE_PRINCIPAL_TENANT_ID / _ID / _PASSWORD); else the managed identity
when MSI_ENDPOINT or IDENTITY_ENDPOINT says one is there; else the Azure CLI login when `az` is
on PATH; else an error listing these options. The SDK is never given auth=None (that opens a
browser or device-code prompt) and always gets the cloud name (without it, the first token
fetches cloud metadata from the internet and hangs 30 s when that is blocked).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amlctl.errors import ProviderError
from amlctl.providers.azure import sdk

DEFAULT_CLOUD = "AzureCloud"
KNOWN_CLOUDS = ("AzureCloud", "AzureChinaCloud", "AzureUSGovernment", "AzureGermanCloud")
SP_VARS = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET")
SDK_SP_VARS = ("AZUREML_SERVICE_PRINCIPAL_TENANT_ID", "AZUREML_SERVICE_PRINCIPAL_ID",
               "AZUREML_SERVICE_PRINCIPAL_PASSWORD")
MSI_VARS = ("IDENTITY_ENDPOINT", "MSI_ENDPOINT")


class AuthError(ProviderError):
    """No usable Azure identity."""


@dataclass(frozen=True)
class Credential:
    """The chosen identity: `kind` for messages, `auth` for the SDK."""

    kind: str  # service_principal | managed_identity | azure_cli
    description: str
    auth: Any
    cloud: str


def cloud_name(env: Mapping[str, str] = os.environ) -> str:
    """AMLCTL_AZURE_CLOUD, else AZUREML_CURRENT_CLOUD, else AzureCloud."""
    name = env.get("AMLCTL_AZURE_CLOUD") or env.get("AZUREML_CURRENT_CLOUD") or DEFAULT_CLOUD
    if name not in KNOWN_CLOUDS:
        raise AuthError(f"unknown Azure cloud {name!r} (AMLCTL_AZURE_CLOUD); expected one of "
                        f"{', '.join(KNOWN_CLOUDS)}")
    return name


def _service_principal(env: Mapping[str, str]) -> tuple[str, str, str, str] | None:
    """(tenant, client id, secret, which variables) from either naming, or None."""
    for names in (SP_VARS, SDK_SP_VARS):
        values = [env.get(n, "") for n in names]
        if all(values):
            return values[0], values[1], values[2], "/".join(names)
        # AZURE_CLIENT_ID alone also selects a user-assigned managed identity: not partial
        present = [n for n, v in zip(names, values, strict=True) if v]
        if present and not (names is SP_VARS and present == ["AZURE_CLIENT_ID"]):
            missing = [n for n, v in zip(names, values, strict=True) if not v]
            raise AuthError(f"service principal settings are incomplete: {', '.join(present)} "
                            f"set but {', '.join(missing)} missing")
    return None


def resolve(env: Mapping[str, str] = os.environ, az_path: str | None = None) -> Credential:
    """Pick the identity (see module doc). Raises AuthError when there is none."""
    cloud = cloud_name(env)
    s = sdk.load()
    sp = _service_principal(env)
    if sp is not None:
        tenant, client_id, secret, names = sp
        auth = s.ServicePrincipalAuthentication(tenant_id=tenant, service_principal_id=client_id,
                                                service_principal_password=secret, cloud=cloud)
        return Credential("service_principal", f"service principal {client_id} ({names})", auth,
                          cloud)
    if any(env.get(n) for n in MSI_VARS):
        client_id = env.get("AZURE_CLIENT_ID")
        config = {"client_id": client_id} if client_id else None
        auth = s.MsiAuthentication(cloud=cloud, identity_config=config)
        who = f"user-assigned {client_id}" if client_id else "system-assigned"
        return Credential("managed_identity", f"managed identity ({who})", auth, cloud)
    az = az_path or shutil.which("az")
    if az:
        tokens = AzCliTokens(az)
        auth = s.TokenAuthentication(tokens.get, cloud=cloud)
        return Credential("azure_cli", "Azure CLI login (az account get-access-token)", auth,
                          cloud)
    raise AuthError(
        "no Azure credentials found. Set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
        "AZURE_CLIENT_SECRET for a service principal (CI), run on a machine with a managed "
        "identity, or install the Azure CLI and run `az login`. amlctl never opens an "
        "interactive login by itself.")


class AzCliTokens:
    """Tokens from the `az` command, cached until five minutes before they expire.

    The SDK's AzureCliAuthentication needs azure-cli installed in the same Python; calling the
    `az` executable works with any installation of the CLI.
    """

    def __init__(self, az: str, timeout_s: float = 60.0) -> None:
        self.az = az
        self.timeout_s = timeout_s
        self._cache: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def get(self, audience: Any) -> str:
        """An access token for `audience` (a resource URL), as TokenAuthentication asks."""
        resource = str(getattr(audience, "value", audience))
        with self._lock:
            cached = self._cache.get(resource)
            if cached and cached[1] - 300 > time.time():
                return cached[0]
            token, expires = self._fetch(resource)
            self._cache[resource] = (token, expires)
            return token

    def _fetch(self, resource: str) -> tuple[str, float]:
        cmd = [self.az, "account", "get-access-token", "--resource", resource, "--output",
               "json"]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s,
                                  check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise AuthError(f"`az account get-access-token` failed: {e}") from e
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise AuthError("the Azure CLI could not give a token "
                            f"({detail[-1] if detail else 'exit ' + str(done.returncode)}); "
                            "run `az login` (or set service principal variables)")
        try:
            data = json.loads(done.stdout)
            token = data["accessToken"]
        except (ValueError, KeyError) as e:
            raise AuthError(f"unexpected output from `az account get-access-token`: {e}") from e
        expires = data.get("expires_on")
        return token, float(expires) if expires else time.time() + 600
