"""Fixtures for the azure-v2 backend tests: the real azure-ai-ml client (and, for the switch
between SDKs, the real azureml SDK) against the fake Azure edge with the v2 routes
(fake_v2.py) and Azurite for blob storage (as tests/azure). Only the network edge is
replaced: host names resolve to the fake or Azurite, every other connection is refused.

azure-ai-ml and azureml-sdk are part of `make test` (the azure and azure-v2 extras), so a
missing one fails these tests with the install command instead of skipping them.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "azure"), str(HERE.parent)]

from azurite import (  # noqa: E402
    ACCOUNT,
    ACCOUNT_KEY,
    Azurite,
    AzuriteMissing,
    azurite_container,
    start_azurite,
)
from fake_service import make_certificate, make_token, route_hosts  # noqa: E402
from fake_v2 import FakeV2Azure  # noqa: E402
from v2_support import SUBSCRIPTION, FakeTokenCredential  # noqa: E402

MISSING = ("the azure-v2 tests need azure-ai-ml, azure-identity and azureml-sdk; install them "
           "with: pip install -e '.[azure,azure-v2]' (make test does)")


def _v1_conftest() -> Any:
    """tests/azure/conftest.py, for the environment it clears (one list for both SDKs)."""
    spec = importlib.util.spec_from_file_location("azure_v1_conftest",
                                                  HERE.parent / "azure" / "conftest.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


CLEARED = [*_v1_conftest().CLEARED, "AZURE_FEDERATED_TOKEN_FILE", "AZURE_AUTHORITY_HOST",
           "AZUREML_ARM_SCOPE"]


def pytest_configure(config: pytest.Config) -> None:
    """azure-ai-ml's schemas use marshmallow API that marshmallow 4 drops: not ours to fix."""
    config.addinivalue_line("filterwarnings",
                            "ignore::marshmallow.warnings.Marshmallow4Warning")


def _apply_env(mp: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    for name in CLEARED:
        mp.delenv(name, raising=False)
    for name, value in env.items():
        mp.setenv(name, value)


@dataclass
class V2Edge:
    """The running fake and the environment both SDKs must see."""

    service: FakeV2Azure
    env: dict[str, str]
    azurite: Azurite


@pytest.fixture(scope="session")
def azure_v2_edge(tmp_path_factory: pytest.TempPathFactory) -> Iterator[V2Edge]:
    """Start the fake (v1 and v2 routes on one state) and import both SDKs against it."""
    for module in ("azure.ai.ml", "azure.identity", "azureml.core"):
        if importlib.util.find_spec(module.split(".")[0]) is None or \
                importlib.util.find_spec(module) is None:
            pytest.fail(f"{module} is not installed: {MISSING}", pytrace=False)
    root = tmp_path_factory.mktemp("azure-v2-edge")
    cert, key = make_certificate(root / "tls")
    home = root / "home"
    (home / ".azure").mkdir(parents=True)
    env = {"HOME": str(home), "AZURE_CONFIG_DIR": str(home / ".azure"),
           "REQUESTS_CA_BUNDLE": str(cert), "SSL_CERT_FILE": str(cert), "NO_PROXY": "*"}
    try:
        azurite = start_azurite(root, cert, key)
    except AzuriteMissing as err:
        pytest.fail(str(err), pytrace=False)
    service = FakeV2Azure(subscription_id=SUBSCRIPTION)
    service.start(cert, key)
    with pytest.MonkeyPatch.context() as mp:
        _apply_env(mp, env)
        with route_hosts(service.port, azurite.port) as refused:
            from amlctl.providers.azure import sdk as v1_sdk
            from amlctl.providers.azure_v2 import sdk as v2_sdk

            v1_sdk.load()
            v2_sdk.load()
        assert not refused, f"importing the SDKs tried to reach {refused}"
    # workspaces keep their default storage in Azurite, as in tests/azure
    service.default_storage = (ACCOUNT, ACCOUNT_KEY, lambda name: azurite_container(
        azurite, cert, ACCOUNT, ACCOUNT_KEY, name))
    try:
        yield V2Edge(service, env, azurite)
    finally:
        service.stop()
        azurite.stop()


@pytest.fixture
def fake(azure_v2_edge: V2Edge, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeV2Azure]:
    """A reset fake reachable under the real Azure host names; nothing else is reachable."""
    _apply_env(monkeypatch, azure_v2_edge.env)
    azure_v2_edge.service.reset()
    with route_hosts(azure_v2_edge.service.port, azure_v2_edge.azurite.port) as refused:
        yield azure_v2_edge.service
    assert not refused, f"the test tried to reach non-loopback addresses: {refused}"


@pytest.fixture
def credential(fake: FakeV2Azure) -> FakeTokenCredential:
    """The token credential SDK v2 gets (azure-identity's are tested in test_v2_auth.py)."""
    return FakeTokenCredential()


@pytest.fixture
def token_auth(fake: FakeV2Azure) -> Any:
    """SDK v1's TokenAuthentication, for the v1 half of the switch tests."""
    from azureml.core.authentication import TokenAuthentication

    return TokenAuthentication(lambda audience: make_token(str(audience)), cloud="AzureCloud")
