"""Which identity talks to Azure through SDK v2: the same explicit chain as the v1 backend.

Order: workload identity federation (AZURE_FEDERATED_TOKEN_FILE with AZURE_TENANT_ID and
AZURE_CLIENT_ID, as GitHub OIDC and AKS set them); else a service principal (the v1 variables,
see amlctl.providers.azure.auth); else a managed identity when MSI_ENDPOINT or
IDENTITY_ENDPOINT says one is there; else the Azure CLI login when `az` is on PATH; else an
error. Never DefaultAzureCredential (it may end in an interactive browser login) and every
credential gets the authority host of the chosen cloud, so nothing looks a cloud up online.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from typing import Any

from amlctl.providers.azure.auth import (
    MSI_VARS,
    AuthError,
    Credential,
    _service_principal,
    cloud_name,
)

FEDERATED_VARS = ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_FEDERATED_TOKEN_FILE")
# azure-identity's AzureAuthorityHosts, by the cloud names both SDKs use
AUTHORITY = {"AzureCloud": "login.microsoftonline.com",
             "AzureChinaCloud": "login.chinacloudapi.cn",
             "AzureUSGovernment": "login.microsoftonline.us"}


def authority_for(cloud: str) -> str:
    """The Entra ID host of `cloud`; clouds azure-ai-ml does not know are refused."""
    host = AUTHORITY.get(cloud)
    if host is None:
        raise AuthError(f"the azure-v2 backend does not support cloud {cloud!r}; expected one "
                        f"of {', '.join(AUTHORITY)}")
    return host


def resolve(env: Mapping[str, str] = os.environ, az_path: str | None = None) -> Credential:
    """Pick the identity (see module doc); `auth` is an azure-identity TokenCredential."""
    cloud = cloud_name(env)
    authority = authority_for(cloud)
    import azure.identity as identity

    token_file = env.get("AZURE_FEDERATED_TOKEN_FILE")
    if token_file:
        missing = [n for n in FEDERATED_VARS if not env.get(n)]
        if missing:
            raise AuthError("workload identity federation needs "
                            f"{', '.join(FEDERATED_VARS)}; {', '.join(missing)} missing")
        cred: Any = identity.WorkloadIdentityCredential(
            tenant_id=env["AZURE_TENANT_ID"], client_id=env["AZURE_CLIENT_ID"],
            token_file_path=token_file, authority=authority)
        return Credential("workload_identity", f"workload identity {env['AZURE_CLIENT_ID']} "
                          "(AZURE_FEDERATED_TOKEN_FILE)", cred, cloud)
    sp = _service_principal(env)
    if sp is not None:
        tenant, client_id, secret, names = sp
        cred = identity.ClientSecretCredential(tenant, client_id, secret, authority=authority)
        return Credential("service_principal", f"service principal {client_id} ({names})",
                          cred, cloud)
    if any(env.get(n) for n in MSI_VARS):
        client_id = env.get("AZURE_CLIENT_ID")
        cred = identity.ManagedIdentityCredential(client_id=client_id) if client_id else \
            identity.ManagedIdentityCredential()
        who = f"user-assigned {client_id}" if client_id else "system-assigned"
        return Credential("managed_identity", f"managed identity ({who})", cred, cloud)
    if az_path or shutil.which("az"):
        return Credential("azure_cli", "Azure CLI login (az account get-access-token)",
                          identity.AzureCliCredential(process_timeout=60), cloud)
    raise AuthError(
        "no Azure credentials found. Set AZURE_TENANT_ID, AZURE_CLIENT_ID and "
        "AZURE_CLIENT_SECRET for a service principal, or AZURE_TENANT_ID, AZURE_CLIENT_ID and "
        "AZURE_FEDERATED_TOKEN_FILE for workload identity federation (GitHub OIDC), run on a "
        "machine with a managed identity, or install the Azure CLI and run `az login`. amlctl "
        "never opens an interactive login by itself.")
