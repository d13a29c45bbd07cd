"""Errors on the azure backend keep the service's own words (AADSTS codes, "no access to
subscription", the run history's message) with the HTTP status and a hint; a workspace name
that matches nothing in its resource group is said plainly in the plan. The real SDK talks to
the fake service; only the network edge is replaced."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure, route_hosts

from amlctl.errors import ProviderError
from amlctl.manifest.models import Run
from amlctl.providers.azure import auth
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.base import ComputeRef, RunRequest
from amlctl.runs.definition import definition_of

TENANT = "72f988bf-0000-0000-0000-000000000001"
NO_WAIT = RetryPolicy(sleep=lambda _s: None)


def workspace(name: str = "ml-ws", subscription: str = SUBSCRIPTION,
              group: str = "ml-rg") -> dict[str, Any]:
    return {"name": name, "subscription_id": subscription, "resource_group": group,
            "location": "westeurope", "create_resource_group": False, "tags": {}}


def provider(attrs: dict[str, Any], auth_: Any, tmp_path: Path) -> AzureProvider:
    return AzureProvider(attrs, "demo", tmp_path, auth=auth_, cloud="AzureCloud",
                         policy=NO_WAIT)


def test_a_wrong_client_secret_shows_the_aadsts_code(fake: FakeAzure, tmp_path: Path) -> None:
    fake.add_workspace("ml-rg", "ml-ws")
    fake.add_service_principal("ci-app", "right")
    credential = auth.resolve({"AZURE_TENANT_ID": TENANT, "AZURE_CLIENT_ID": "ci-app",
                               "AZURE_CLIENT_SECRET": "wrong"})
    with pytest.raises(ProviderError) as info:
        provider(workspace(), credential.auth, tmp_path).read_all()
    message = str(info.value)
    assert "AADSTS7000215: Invalid client secret provided." in message
    assert "Microsoft Entra ID refused the sign-in" in message


def test_a_subscription_without_access_is_named(fake: FakeAzure, token_auth: Any,
                                                tmp_path: Path) -> None:
    other = "11111111-0000-0000-0000-000000000000"
    with pytest.raises(ProviderError) as info:
        provider(workspace(subscription=other), token_auth, tmp_path).read_all()
    message = str(info.value)
    assert f"You don't have access to {other} subscription" in message
    assert "role assignment in that subscription" in message


def test_run_history_errors_keep_the_service_message_and_status(fake: FakeAzure,
                                                                token_auth: Any,
                                                                tmp_path: Path) -> None:
    fake.add_workspace("ml-rg", "ml-ws")
    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("print(1)\n")
    run = Run.model_validate({"experiment": "exp", "compute": "missing", "source_directory":
                              "src", "entry_script": "train.py"})
    request = RunRequest(name="r", spec_hash="0123456789abcdef", run=definition_of(run),
                         source_dir=src, compute=ComputeRef("missing"), secrets={})
    with pytest.raises(ProviderError) as info:
        provider(workspace(), token_auth, tmp_path).submit_run(request)
    message = str(info.value)
    assert "(HTTP 400): (UserError) Compute target missing not found in workspace ml-ws" in \
        message
    assert "ExperimentExecutionException" not in message and "\n" not in message


def test_compute_errors_carry_the_http_status(fake: FakeAzure, token_auth: Any,
                                              tmp_path: Path) -> None:
    fake.add_workspace("ml-rg", "ml-ws")
    attrs = {"vm_size": "Standard_D2_v2", "vm_priority": "dedicated", "min_nodes": 0,
             "max_nodes": 1, "idle_seconds_before_scaledown": 1800, "tags": {}}
    with pytest.raises(ProviderError) as info:
        provider(workspace(), token_auth, tmp_path).create("compute.x", attrs, {})
    assert "creating compute x failed" in str(info.value)
    assert "(HTTP 400)" in str(info.value)
    assert "Compute name is invalid" in str(info.value)


def test_a_workspace_name_matching_nothing_is_said_plainly(fake: FakeAzure, token_auth: Any,
                                                           tmp_path: Path) -> None:
    fake.add_workspace("ml-rg", "ml-workspace")
    fake.add_workspace("ml-rg", "other-ws")
    typo = provider(workspace("ml-wrokspace"), token_auth, tmp_path)
    assert typo.read_all() == {}
    notes = typo.create_notes("workspace", workspace("ml-wrokspace"))
    assert notes[0].startswith("workspace 'ml-wrokspace' does not exist in resource group "
                               "'ml-rg': a NEW workspace will be created")
    assert notes[1] == ("the resource group has 2 workspaces: ml-workspace, other-ws; "
                        "did you mean 'ml-workspace'?")
    lonely = provider(workspace("ml-ws", group="new-rg"), token_auth, tmp_path)
    assert lonely.create_notes("workspace", {}) == [
        "resource group 'new-rg' does not exist, and create_resource_group is not set: apply "
        "will fail; create the group or set create_resource_group: true"]
    fake.fail_next("GET", "/Microsoft.MachineLearningServices/workspaces", 403)
    (only,) = typo.create_notes("workspace", {})  # no right to list: still said plainly
    assert "a NEW workspace will be created" in only
    assert fake.failures[-1].times == 0  # the listing was refused
    made = provider({**workspace("ml-ws", group="new-rg"), "create_resource_group": True},
                    token_auth, tmp_path)
    assert made.create_notes("workspace", {}) == [
        "resource group 'new-rg' does not exist either: both are created"]


@pytest.fixture
def own_blob_storage(fake: FakeAzure, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeAzure]:
    """Blob traffic to the fake's own blob emulation instead of Azurite, for what Azurite
    cannot do: answer 503 on demand, change an account's key."""
    monkeypatch.setattr(fake, "default_storage", None)
    with route_hosts(fake.port) as refused:
        yield fake
    assert not refused


def test_blob_failures_are_retried_by_one_bounded_policy(own_blob_storage: FakeAzure,
                                                         token_auth: Any,
                                                         tmp_path: Path) -> None:
    """Five 503s on a listing: amlctl's five attempts, not the SDK's retries under each
    (3 more per attempt, 15 s apart); then the service's words, no traceback."""
    fake = own_blob_storage
    fake.add_workspace("ml-rg", "ml-ws")
    store = provider(workspace(), token_auth, tmp_path).file_store("default", "data")
    fake.calls.clear()
    fake.fail_next("GET", "/azureml-blobstore-", 503, times=5)
    with pytest.raises(ProviderError) as info:
        store.list_files()
    listings = [c for c in fake.calls if c.method == "GET" and "comp" in c.query]
    assert len(listings) == 5
    assert "failed after 5 attempts (HTTP 503)" in str(info.value)
    assert "Traceback" not in str(info.value)


ROTATION_MANIFEST = """\
version: 1
name: demo
workspace:
  name: ml-ws
  subscription_id: "{sub}"
  resource_group: ml-rg
  location: westeurope
datastores:
  images:
    type: azure_blob
    account_name: extacct
    container_name: images
    account_key: "{{{{ secret_env('IMAGES_KEY') }}}}"
uploads:
  pics:
    datastore: images
    src_dir: data
    target_path: pics
"""


def test_a_rotated_datastore_key_is_fixed_by_the_manifest_alone(
        own_blob_storage: FakeAzure, token_auth: Any, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The key is rotated on the account and in the manifest's secret: the plan lists the
    upload's target with the new key (the registered one is refused), re-registers the
    datastore and uploads nothing again."""
    from amlctl.engine.executor import apply_plan
    from amlctl.engine.plan import Action
    from amlctl.engine.planner import Context, bind_state, make_plan
    from amlctl.manifest.loader import load_manifest

    fake = own_blob_storage
    fake.add_workspace("ml-rg", "ml-ws", tags={"amlctl.stack": "demo"})
    old_key = fake.add_storage_account("extacct", ["images"])
    (tmp_path / "amlctl.yaml").write_text(ROTATION_MANIFEST.format(sub=SUBSCRIPTION))
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "cat.png").write_bytes(b"png")
    monkeypatch.setenv("IMAGES_KEY", old_key)

    def context() -> Context:
        loaded = load_manifest(tmp_path / "amlctl.yaml")
        state = tmp_path / ".amlctl"
        backend = provider(workspace(), token_auth, state)
        return bind_state(Context(loaded, backend, backend.state_store(), state, "azure"))

    ctx = context()
    assert apply_plan(ctx, make_plan(ctx)).ok
    ctx.close()
    new_key = "bmV3LWtleS1ub3ctaW4tdXNlLW9uLXRoZS1hY2NvdW50"
    fake.account_keys["extacct"] = new_key  # rotated in the portal
    monkeypatch.setenv("IMAGES_KEY", new_key)
    ctx = context()
    plan = make_plan(ctx)
    actions = {c.address: c.action for c in plan.changes}
    assert actions["datastore.images"] is Action.UPDATE
    assert actions["upload.pics"] is Action.NOOP
    assert apply_plan(ctx, plan).ok
    ctx.close()
    (ws,) = fake.workspaces.values()
    assert ws.datastores["images"]["azureStorageSection"]["credential"] == new_key
    ctx = context()
    assert all(c.action is Action.NOOP for c in make_plan(ctx).changes)
    ctx.close()
