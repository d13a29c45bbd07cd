"""Choosing the Azure identity. The real SDK auth classes are used; tokens come from the fake
Microsoft Entra ID endpoint or a stand-in `az` executable: only the network edge is replaced.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure, make_token

from amlctl.providers.azure import auth

TENANT = "72f988bf-0000-0000-0000-000000000001"


def open_workspace(fake: FakeAzure, credential: auth.Credential) -> Any:
    from azureml.core import Workspace

    fake.add_workspace("ml-rg", "ml-ws")
    return Workspace.get("ml-ws", auth=credential.auth, subscription_id=SUBSCRIPTION,
                         resource_group="ml-rg", cloud=credential.cloud)


def test_service_principal_from_azure_variables_talks_to_azure(fake: FakeAzure) -> None:
    """AZURE_TENANT_ID / AZURE_CLIENT_ID / AZURE_CLIENT_SECRET: the client-credentials flow
    against the token endpoint, then ARM with that token."""
    fake.add_service_principal("ci-app", "s3cret")
    env = {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": "ci-app", "AZURE_CLIENT_SECRET": "s3cret"}
    credential = auth.resolve(env)
    assert credential.kind == "service_principal"
    assert credential.auth._cloud_type.name == "AzureCloud"
    assert open_workspace(fake, credential).name == "ml-ws"
    token_call = fake.calls_to("POST", f"/{TENANT}/oauth2/v2.0/token")[0]
    assert "grant_type=client_credentials" in token_call.body.decode()


def test_sdk_variable_names_and_wrong_secret(fake: FakeAzure) -> None:
    """The SDK's own AZUREML_SERVICE_PRINCIPAL_* names work; a bad secret fails clearly."""
    fake.add_service_principal("ci-app", "right")
    env = {"AZUREML_SERVICE_PRINCIPAL_TENANT_ID": TENANT,
           "AZUREML_SERVICE_PRINCIPAL_ID": "ci-app",
           "AZUREML_SERVICE_PRINCIPAL_PASSWORD": "wrong"}
    credential = auth.resolve(env)
    assert "AZUREML_SERVICE_PRINCIPAL_TENANT_ID" in credential.description
    with pytest.raises(Exception, match=r"AADSTS7000215|Invalid client secret"):
        open_workspace(fake, credential)


def test_incomplete_service_principal_is_an_error(fake: FakeAzure) -> None:
    """Two of three variables: say which one is missing instead of trying something else."""
    with pytest.raises(auth.AuthError, match="AZURE_CLIENT_SECRET missing"):
        auth.resolve({"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": "x"})


def test_managed_identity_when_its_endpoint_is_set(fake: FakeAzure) -> None:
    """IDENTITY_ENDPOINT (or MSI_ENDPOINT) selects MsiAuthentication; AZURE_CLIENT_ID picks a
    user-assigned identity."""
    from azureml.core.authentication import MsiAuthentication

    credential = auth.resolve({"IDENTITY_ENDPOINT": "http://127.0.0.1:1/msi",
                               "AZURE_CLIENT_ID": "uami-1"}, az_path="")
    assert isinstance(credential.auth, MsiAuthentication)
    assert credential.auth._identity_config == {"client_id": "uami-1"}
    assert credential.kind == "managed_identity"


def fake_az(folder: Path) -> Path:
    """An `az` that answers get-access-token like the real CLI does."""
    script = folder / "az"
    token = make_token("https://management.core.windows.net/")
    script.write_text("#!/bin/sh\n"
                      f"echo '{json.dumps({'accessToken': token, 'expires_on': 4102444800})}'\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return script


def test_azure_cli_login_through_the_az_command(fake: FakeAzure, tmp_path: Path) -> None:
    """No service principal, no managed identity: tokens from `az account get-access-token`."""
    credential = auth.resolve({}, az_path=str(fake_az(tmp_path)))
    assert credential.kind == "azure_cli"
    assert open_workspace(fake, credential).name == "ml-ws"


def test_no_credentials_never_falls_back_to_interactive_login(fake: FakeAzure,
                                                              monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    """Nothing configured and no `az`: a clear error, not a browser prompt."""
    monkeypatch.setenv("PATH", "")
    with pytest.raises(auth.AuthError, match="never opens an interactive login"):
        auth.resolve(dict(os.environ))


def test_cloud_is_explicit(fake: FakeAzure) -> None:
    """AMLCTL_AZURE_CLOUD wins over AZUREML_CURRENT_CLOUD; unknown names are refused."""
    assert auth.cloud_name({}) == "AzureCloud"
    assert auth.cloud_name({"AZUREML_CURRENT_CLOUD": "AzureUSGovernment"}) == "AzureUSGovernment"
    assert auth.cloud_name({"AMLCTL_AZURE_CLOUD": "AzureChinaCloud",
                            "AZUREML_CURRENT_CLOUD": "AzureUSGovernment"}) == "AzureChinaCloud"
    with pytest.raises(auth.AuthError, match="unknown Azure cloud"):
        auth.cloud_name({"AMLCTL_AZURE_CLOUD": "Mars"})
    fake.add_service_principal("ci-app", "s")
    credential = auth.resolve({"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": "ci-app",
                               "AZURE_CLIENT_SECRET": "s",
                               "AMLCTL_AZURE_CLOUD": "AzureUSGovernment"})
    assert credential.auth._cloud_type.name == "AzureUSGovernment"
