"""The azure-v2 backend as a user reaches it: `amlctl --backend azure-v2 ...` with the
credential chain resolved from the environment (real azure-identity credentials, tokens from
the fake Entra ID), and the chain's choices."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fake_v2 import FakeV2Azure
from v2_support import SUBSCRIPTION

from amlctl.providers.azure.auth import AuthError
from amlctl.providers.azure_v2 import auth
from amlctl.providers.base import OWNER_TAG

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"
TENANT = "72f988bf-0000-0000-0000-000000000001"
CLIENT = "11111111-0000-0000-0000-000000000003"


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """Run amlctl in this process (the fake's host routing is in-process)."""
    from amlctl.cli import main

    with pytest.raises(SystemExit) as done:
        main(list(args))
    out = capsys.readouterr()
    return int(done.value.code or 0), out.out + out.err


@pytest.fixture
def mnist(fake: FakeV2Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    shutil.copytree(EXAMPLE, tmp_path / "mnist")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    return tmp_path / "mnist" / "amlctl.yaml"


def test_plan_apply_replan_from_nothing_with_a_service_principal(
        fake: FakeV2Azure, mnist: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    fake.add_service_principal(CLIENT, "s3cret-value")
    for name, value in (("AZURE_TENANT_ID", TENANT), ("AZURE_CLIENT_ID", CLIENT),
                        ("AZURE_CLIENT_SECRET", "s3cret-value")):
        monkeypatch.setenv(name, value)
    code, out = cli(capsys, "--backend", "azure-v2", "plan", "--detailed-exitcode", "-f",
                    str(mnist))
    assert code == 2, out  # changes present
    for address in ("workspace", "compute.cpu-cluster", "experiment.tensorflow_experiment",
                    "upload.mnist", "run.tf-mnist"):
        assert f"+ {address}" in out, out
    code, out = cli(capsys, "--backend", "azure-v2", "apply", "--auto-approve", "-f", str(mnist))
    assert code == 0, out
    assert "Uploading" not in out, "the SDK's snapshot progress stays in the log"
    code, out = cli(capsys, "--backend", "azure-v2", "plan", "--detailed-exitcode", "-f",
                    str(mnist))
    assert code == 0, out
    assert len(fake.job_bodies("mnist-rg", "mnist-ws")) == 1
    assert fake.workspaces[("mnist-rg", "mnist-ws")].tags == {"team": "vision",
                                                              OWNER_TAG: "mnist"}
    assert "s3cret-value" not in out
    tokens = fake.calls_to("POST", f"/{TENANT}/oauth2/v2.0/token")
    assert tokens and "client_secret=s3cret-value" in tokens[0].body.decode()
    assert "ActivityCompleted" not in out and "experimental class" not in out
    code, out = cli(capsys, "--backend", "azure-v2", "status", "-f", str(mnist))
    assert code == 0 and "cpu-cluster" in out and "tf-mnist" in out, out
    code, out = cli(capsys, "--backend", "azure-v2", "runs", "-f", str(mnist))
    [job] = fake.job_bodies("mnist-rg", "mnist-ws")
    assert code == 0 and job in out, out
    code, out = cli(capsys, "--backend", "azure-v2", "destroy", "--auto-approve",
                    "--cancel-runs", "-f", str(mnist))
    assert code == 0, out
    assert fake.job_bodies("mnist-rg", "mnist-ws")[job]["properties"]["status"] == "Canceled"
    assert fake.compute("mnist-rg", "mnist-ws", "cpu-cluster") is None
    code, out = cli(capsys, "--backend", "azure-v2", "plan", "--detailed-exitcode", "-f",
                    str(mnist))
    assert code == 2 and "+ compute.cpu-cluster" in out, out


def test_workload_identity_federation_gets_a_token(
        fake: FakeV2Azure, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "oidc-token"
    token_file.write_text("the-runner-oidc-token")
    fake.add_federated_identity(CLIENT, "the-runner-oidc-token")
    env = {"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": CLIENT,
           "AZURE_FEDERATED_TOKEN_FILE": str(token_file)}
    chosen = auth.resolve(env)
    assert chosen.kind == "workload_identity"
    token = chosen.auth.get_token("https://management.azure.com/.default")
    assert token.token.count(".") == 2
    [call] = fake.calls_to("POST", f"/{TENANT}/oauth2/v2.0/token")
    assert "client_assertion=the-runner-oidc-token" in call.body.decode()
    token_file.write_text("someone-elses-token")
    with pytest.raises(Exception, match="AADSTS700213"):
        auth.resolve(env).auth.get_token("https://management.azure.com/.default")


@pytest.mark.parametrize(("env", "kind"), [
    ({"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c", "AZURE_CLIENT_SECRET": "s"},
     "service_principal"),
    ({"AZUREML_SERVICE_PRINCIPAL_TENANT_ID": "t", "AZUREML_SERVICE_PRINCIPAL_ID": "c",
      "AZUREML_SERVICE_PRINCIPAL_PASSWORD": "s"}, "service_principal"),
    ({"IDENTITY_ENDPOINT": "http://127.0.0.1:1/token", "IDENTITY_HEADER": "h"},
     "managed_identity"),
    ({"MSI_ENDPOINT": "http://127.0.0.1:1/token", "AZURE_CLIENT_ID": "c"}, "managed_identity"),
])
def test_the_chain_picks_by_environment(fake: FakeV2Azure, env: dict[str, str],
                                        kind: str) -> None:
    chosen = auth.resolve(env, az_path=None)
    assert chosen.kind == kind
    assert chosen.cloud == "AzureCloud"


def test_azure_cli_then_nothing(fake: FakeV2Azure, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no `az` on PATH
    with pytest.raises(AuthError, match="never opens an interactive login"):
        auth.resolve({})
    assert auth.resolve({}, az_path="/usr/bin/az").kind == "azure_cli"


def test_incomplete_settings_are_errors(fake: FakeV2Azure) -> None:
    with pytest.raises(AuthError, match="AZURE_FEDERATED_TOKEN_FILE; AZURE_TENANT_ID missing"):
        auth.resolve({"AZURE_CLIENT_ID": "c", "AZURE_FEDERATED_TOKEN_FILE": "/t"})
    with pytest.raises(AuthError, match="AZURE_CLIENT_SECRET missing"):
        auth.resolve({"AZURE_TENANT_ID": "t", "AZURE_CLIENT_ID": "c"})
    with pytest.raises(AuthError, match="does not support cloud 'AzureGermanCloud'"):
        auth.resolve({"AMLCTL_AZURE_CLOUD": "AzureGermanCloud"})


def test_a_missing_sdk_names_the_extra(tmp_path: Path) -> None:
    """Without azure-ai-ml, an azure-v2 command stops with the install command (exit 1)."""
    import subprocess
    import sys

    blocker = tmp_path / "blocker"  # a portion of the `azure` namespace found first
    (blocker / "azure" / "ai").mkdir(parents=True)
    (blocker / "azure" / "ai" / "ml.py").write_text("raise ImportError('no azure-ai-ml here')\n")
    manifest = tmp_path / "amlctl.yaml"
    manifest.write_text("version: 1\nname: s\nbackend: azure-v2\nworkspace: {name: my-ws, "
                        f"subscription_id: '{SUBSCRIPTION}', resource_group: rg, "
                        "location: westeurope}\n")
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from amlctl.cli import main; "
            "main(['plan', '-f', sys.argv[2]])")
    done = subprocess.run([sys.executable, "-c", code, str(blocker), str(manifest)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert "pip install 'amlctl[azure-v2]'" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_sdks_log_records_show_with_debug_logging_only(fake: FakeV2Azure) -> None:
    """azure-ai-ml's loggers (activity telemetry, "experimental class" notes) stay out of a
    normal (or `-v`) run's stderr, and reach it with `amlctl -vv` (the root logger at DEBUG)."""
    import logging

    from amlctl.providers.azure_v2 import sdk

    root = logging.getLogger()
    before = root.level
    telemetry = logging.getLogger("azure.ai.ml._telemetry.some.operations")
    try:
        for level, shown in ((logging.WARNING, False), (logging.INFO, False),
                             (logging.DEBUG, True)):
            root.setLevel(level)
            sdk.quiet_loggers()
            assert telemetry.isEnabledFor(logging.ERROR) is shown, logging.getLevelName(level)
            assert telemetry.propagate
    finally:
        root.setLevel(before)
        sdk.quiet_loggers()
