"""Fixtures for the Azure backend tests: the real azureml SDK with only its network edge replaced.

`azure_edge` (once per test run) makes a certificate, starts `FakeAzure` and Azurite (the
official storage emulator: blob storage of every workspace's default datastore) on
127.0.0.1 and imports the SDK with HOME / AZURE_CONFIG_DIR in a temporary folder (the SDK
bakes some of those paths in at import time, so nothing else may import azureml first).
`fake` (per test) re-applies that environment, routes Azure host names to the fake (blob
hosts to Azurite), refuses every non-loopback connection, and checks afterwards that none
was attempted.

Stories that run on both SDKs parametrize `backend` ("azure" by default, or "azure-v2"):
`fake` is then the fake edge of that backend. For azure-v2 it is `FakeV2Azure`
(tests/azure_v2/fake_v2.py: the same fake with the ARM routes azure-ai-ml uses), started on
first use beside the v1 one, on the same certificate and the same Azurite.

Without the azure extra, or without Azurite (`npm ci`), these tests fail (they never skip:
CI installs both), each saying how to install it.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from azurite import ACCOUNT, ACCOUNT_KEY, Azurite, AzuriteMissing, azurite_container, start_azurite
from fake_service import TEST_SUBSCRIPTION, FakeAzure, make_certificate, make_token, route_hosts

MISSING_SDK = ("azureml-sdk is not installed: install the azure extra with "
               "pip install -e '.[azure]' (make install-azure; make test does it)")
SUBSCRIPTION = TEST_SUBSCRIPTION

# Variables that would point the SDK elsewhere or change which credential is picked.
CLEARED = [
    "ARM_CLOUD_METADATA_URL", "AZUREML_DISCOVERY_SERVICE_ENDPOINT", "AZUREML_SERVICE_ENDPOINT",
    "AZUREML_EXPERIMENTATION_HOST", "AZUREML_MMS_TEST_ENDPOINT", "AZUREML_CURRENT_CLOUD",
    "AMLCTL_AZURE_CLOUD", "HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "https_proxy", "http_proxy",
    "all_proxy", "AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET",
    "AZUREML_SERVICE_PRINCIPAL_TENANT_ID", "AZUREML_SERVICE_PRINCIPAL_ID",
    "AZUREML_SERVICE_PRINCIPAL_PASSWORD", "MSI_ENDPOINT", "MSI_SECRET", "IDENTITY_ENDPOINT",
    "IDENTITY_HEADER", "AZURE_SUBSCRIPTION_ID",
]


@dataclass
class AzureEdge:
    """The running fake and the environment the SDK must see."""

    service: FakeAzure
    env: dict[str, str]
    home: Path
    azurite: Azurite
    cert: Path
    key: Path


def pytest_configure(config: pytest.Config) -> None:
    """azure-ai-ml's schemas (the azure-v2 stories) use marshmallow API that marshmallow 4
    drops: not ours to fix (as in tests/azure_v2)."""
    if importlib.util.find_spec("marshmallow") is not None:
        config.addinivalue_line("filterwarnings",
                                "ignore::marshmallow.warnings.Marshmallow4Warning")


def _apply_env(mp: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in CLEARED:
        mp.delenv(name, raising=False)
    for name, value in env.items():
        mp.setenv(name, value)


@pytest.fixture(scope="session")
def azure_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AzureEdge]:
    """Start the fake service and import the SDK against a throw-away home folder."""
    if importlib.util.find_spec("azureml") is None:
        pytest.fail(MISSING_SDK, pytrace=False)
    if "azureml.core" in sys.modules:
        warnings.warn("azureml was imported before the azure_edge fixture: the SDK's "
                      "import-time paths (discovery cache) point at the real home folder",
                      stacklevel=1)
    root = tmp_path_factory.mktemp("azure-edge")
    cert, key = make_certificate(root / "tls")
    home = root / "home"
    (home / ".azure").mkdir(parents=True)
    env = {"HOME": str(home), "AZURE_CONFIG_DIR": str(home / ".azure"),
           "REQUESTS_CA_BUNDLE": str(cert), "SSL_CERT_FILE": str(cert), "NO_PROXY": "*"}
    try:
        azurite = start_azurite(root, cert, key)
    except AzuriteMissing as err:
        pytest.fail(str(err), pytrace=False)
    service = FakeAzure(subscription_id=SUBSCRIPTION)
    service.start(cert, key)
    with pytest.MonkeyPatch.context() as mp:
        _apply_env(mp, env)
        with route_hosts(service.port, azurite.port) as refused:
            from amlctl.providers.azure import sdk

            try:
                sdk.load()  # first: it sets the SDK's retry count before the SDK reads it
            except sdk.AzureSdkMissing as e:
                service.stop()
                azurite.stop()
                pytest.fail(f"{MISSING_SDK}\n{e}", pytrace=False)
        assert not refused, f"importing the SDK tried to reach {refused}"
    service.default_storage = (ACCOUNT, ACCOUNT_KEY, lambda name: azurite_container(
        azurite, cert, ACCOUNT, ACCOUNT_KEY, name))
    try:
        yield AzureEdge(service, env, home, azurite, cert, key)
    finally:
        service.stop()
        azurite.stop()


@pytest.fixture(scope="session")
def azure_v2_service(azure_edge: AzureEdge) -> Iterator[Any]:
    """The azure-v2 fake edge (FakeV2Azure), for stories run on both backends; azure-ai-ml is
    imported here, under the edge's environment (it fails naming the extra when missing)."""
    sys.path.insert(0, str(Path(__file__).parents[1] / "azure_v2"))
    from fake_v2 import FakeV2Azure

    from amlctl.providers.azure_v2 import sdk as v2_sdk

    with pytest.MonkeyPatch.context() as mp:
        _apply_env(mp, azure_edge.env)
        with route_hosts(azure_edge.service.port, azure_edge.azurite.port) as refused:
            try:
                v2_sdk.load()
            except v2_sdk.AzureV2SdkMissing as e:
                pytest.fail(str(e), pytrace=False)
            service = FakeV2Azure(subscription_id=SUBSCRIPTION)
        assert not refused, f"importing azure-ai-ml tried to reach {refused}"
    service.start(azure_edge.cert, azure_edge.key)
    service.default_storage = azure_edge.service.default_storage
    try:
        yield service
    finally:
        service.stop()


@pytest.fixture
def backend() -> str:
    """The backend a test drives: `azure` (SDK v1); a story on both parametrizes it."""
    return "azure"


@pytest.fixture
def fake(azure_edge: AzureEdge, backend: str, request: pytest.FixtureRequest,
         monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzure]:
    """A reset fake (of `backend`) reachable under the real Azure host names; nothing else is
    reachable."""
    _apply_env(monkeypatch, azure_edge.env)
    service = (azure_edge.service if backend == "azure"
               else request.getfixturevalue("azure_v2_service"))
    service.reset()
    with route_hosts(service.port, azure_edge.azurite.port) as refused:
        yield service
    assert not refused, f"the test tried to reach non-loopback addresses: {refused}"


@pytest.fixture
def token_auth(fake: FakeAzure) -> Any:
    """The SDK's public TokenAuthentication, minting tokens locally, cloud given explicitly."""
    from azureml.core.authentication import TokenAuthentication

    return TokenAuthentication(lambda audience: make_token(str(audience)), cloud="AzureCloud")


@pytest.fixture
def workspace(fake: FakeAzure, token_auth: Any) -> Any:
    """A workspace that exists in the fake, opened through the real `Workspace.get`."""
    from azureml.core import Workspace

    fake.add_workspace("ml-rg", "ml-ws", location="westeurope")
    return Workspace.get("ml-ws", auth=token_auth, subscription_id=SUBSCRIPTION,
                         resource_group="ml-rg")

