"""AzureProvider against the fake service: the real SDK runs, only the network edge is replaced.

Each test drives the provider the way the engine does (create, read back, update, replace,
delete) and checks both what amlctl reports and what the service received.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from azurite import ACCOUNT, ACCOUNT_KEY, azurite_client
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure
from history_double import HistoryDouble

from amlctl.errors import ProviderError
from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.base import OWNER_TAG, fingerprint
from amlctl.uploads.model import RemoteFile

WORKSPACE = {"name": "ml-ws", "subscription_id": SUBSCRIPTION, "resource_group": "ml-rg",
             "location": "westeurope", "create_resource_group": False, "tags": {},
             "prevent_destroy": False}
NO_WAIT = RetryPolicy(attempts=4, sleep=lambda _s: None)

COMPUTE = {"vm_size": "STANDARD_D2_V2", "vm_priority": "lowpriority", "min_nodes": 0,
           "max_nodes": 4, "idle_seconds_before_scaledown": 300,
           "vnet": {"resource_group": "net-rg", "name": "vnet", "subnet": "train"},
           "tags": {"team": "vision"}, "description": "cpu pool", "admin_username": None,
           "admin_user_password": None, "admin_user_ssh_key": None}


@pytest.fixture
def provider(fake: FakeAzure, token_auth: Any, tmp_path: Path) -> AzureProvider:
    fake.add_workspace("ml-rg", "ml-ws", tags={OWNER_TAG: "demo"})
    return AzureProvider(WORKSPACE, "demo", tmp_path, auth=token_auth, cloud="AzureCloud",
                         run_service=HistoryDouble(), policy=NO_WAIT,
                         compute_settings=ComputeSettings(sleep=lambda _s: None))


def differences(want: dict[str, Any], have: dict[str, Any]) -> dict[str, tuple[Any, Any]]:
    """Fields the engine's differ would see as changed (empty == no changes)."""
    def normal(v: Any) -> Any:
        return None if v in ({}, [], None) else v
    return {k: (have.get(k), v) for k, v in want.items() if normal(have.get(k)) != normal(v)}


def test_missing_workspace_reads_as_empty(fake: FakeAzure, token_auth: Any,
                                          tmp_path: Path) -> None:
    """No workspace yet: nothing live, no error (the plan will create it)."""
    p = AzureProvider(WORKSPACE, "demo", tmp_path, auth=token_auth, cloud="AzureCloud",
                      run_service=HistoryDouble(), policy=NO_WAIT)
    assert p.read_all() == {}
    assert p.list_runs() == []
    assert p.file_store("default", "data").list_files() == {}


def test_compute_round_trip_plans_no_change(provider: AzureProvider, fake: FakeAzure) -> None:
    """create, then read back: every manifest field comes back equal (normalised)."""
    provider.create("compute.cpu", COMPUTE, {})
    live = provider.read_all()["compute.cpu"]
    assert live.owner == "demo"
    assert differences(COMPUTE, live.attrs) == {}
    sent = fake.calls_to("PUT", "/computes/cpu")[0].json()
    assert sent["tags"] == {"team": "vision", OWNER_TAG: "demo"}
    assert sent["properties"]["properties"]["vmPriority"] == "lowpriority"
    stored = fake.compute("ml-rg", "ml-ws", "cpu")
    assert stored["properties"]["properties"]["vmPriority"] == "LowPriority"


def test_compute_scale_settings_update_in_place(provider: AzureProvider,
                                                fake: FakeAzure) -> None:
    """min/max/idle go through the SDK's update (PATCH), not a new cluster."""
    provider.create("compute.cpu", COMPUTE, {})
    want = {**COMPUTE, "min_nodes": 1, "max_nodes": 6, "idle_seconds_before_scaledown": 900}
    assert provider.updatable_fields("compute") == {"min_nodes", "max_nodes",
                                                    "idle_seconds_before_scaledown"}
    provider.update("compute.cpu", want, ["min_nodes", "max_nodes",
                                          "idle_seconds_before_scaledown"], {})
    assert differences(want, provider.read_all()["compute.cpu"].attrs) == {}
    assert len(fake.calls_to("PATCH", "/computes/cpu")) == 1
    assert len(fake.calls_to("PUT", "/computes/cpu")) == 1
    assert provider.compute_status("cpu").current_nodes == 1
    with pytest.raises(ProviderError, match="vm_size cannot change in place"):
        provider.update("compute.cpu", {**want, "vm_size": "STANDARD_NC6"}, ["vm_size"], {})


def test_compute_replace_waits_for_delete_then_verifies(provider: AzureProvider,
                                                        fake: FakeAzure) -> None:
    """delete (waits until gone) then create; the new size is checked on read-back."""
    provider.create("compute.cpu", COMPUTE, {})
    bigger = {**COMPUTE, "vm_size": "STANDARD_NC6", "tags": {"team": "nlp"}}
    provider.delete("compute.cpu")
    assert fake.compute("ml-rg", "ml-ws", "cpu") is None
    provider.create("compute.cpu", bigger, {})
    assert provider.read_all()["compute.cpu"].attrs["vm_size"] == "STANDARD_NC6"
    methods = [c.method for c in fake.calls if "/computes/cpu" in c.path
               and c.method != "GET"]
    assert methods == ["PUT", "DELETE", "PUT"]


def test_compute_replace_refuses_when_aml_keeps_the_old_size(provider: AzureProvider,
                                                             fake: FakeAzure) -> None:
    """AML reusing the deleted cluster's size is caught, not reported as success."""
    provider.create("compute.cpu", COMPUTE, {})
    provider.delete("compute.cpu")
    fake.reuse_keeps_old_size = True
    with pytest.raises(ProviderError, match=r"vm_size is 'STANDARD_D2_V2', not 'STANDARD_NC6'"):
        provider.create("compute.cpu", {**COMPUTE, "vm_size": "STANDARD_NC6"}, {})


def test_delete_of_a_missing_compute_is_a_no_op(provider: AzureProvider,
                                                 fake: FakeAzure) -> None:
    """Crash recovery may delete twice: the second delete only looks, changes nothing."""
    provider.create("compute.cpu", COMPUTE, {})
    before = len(fake.calls)
    provider.delete("compute.never")
    sent = fake.calls[before:]
    assert {c.method for c in sent if "/computes/never" in c.path} == {"GET"}
    assert [(c.method, c.path) for c in sent if c.method != "GET"] == []
    assert fake.compute("ml-rg", "ml-ws", "cpu") is not None


def test_create_is_idempotent(provider: AzureProvider, fake: FakeAzure) -> None:
    """A create repeated after a crash updates the existing cluster instead of failing."""
    provider.create("compute.cpu", COMPUTE, {})
    provider.create("compute.cpu", {**COMPUTE, "max_nodes": 5}, {})
    assert provider.read_all()["compute.cpu"].attrs["max_nodes"] == 5
    assert len(fake.calls_to("PUT", "/computes/cpu")) == 1


def test_unowned_cluster_is_reported_without_owner(provider: AzureProvider, workspace: Any,
                                                   fake: FakeAzure) -> None:
    """A cluster made outside amlctl has no owner, so prune never touches it."""
    from azureml.core.compute import AmlCompute, ComputeTarget

    ComputeTarget.create(workspace, "theirs", AmlCompute.provisioning_configuration(
        vm_size="STANDARD_D2_V2", max_nodes=1))
    assert provider.read_all()["compute.theirs"].owner is None
    with pytest.raises(ProviderError, match="no amlctl stack"):
        provider.create("compute.theirs", {**COMPUTE, "vnet": None}, {})


def test_transient_errors_are_retried(provider: AzureProvider, fake: FakeAzure) -> None:
    """503 and a dropped connection, then success: the caller never sees them."""
    fake.fail_next("GET", "/rp/workspaces/", 503, times=2)
    fake.fail_next("PUT", "/computes/cpu", 0, reset_connection=True)
    provider.create("compute.cpu", COMPUTE, {})
    assert "compute.cpu" in provider.read_all()
    # the faults really happened and each was followed by a retry that got through
    reads = [c.status for c in fake.calls_to("GET", "/rp/workspaces/")]
    assert reads[:2] == [503, 503] and reads[2] in (200, 404)
    assert [c.status for c in fake.calls_to("PUT", "/computes/cpu")] == [0, 201]  # 0: reset
    assert fake.compute("ml-rg", "ml-ws", "cpu") is not None


def test_a_failed_read_after_the_create_does_not_create_twice(provider: AzureProvider,
                                                              fake: FakeAzure) -> None:
    """The cluster was made but the SDK's read right after the PUT got a 503: the retry
    finds the cluster instead of sending a second PUT (which Azure answers 409)."""
    # the first GET is amlctl's own existence check (404); the second is the SDK's read-back
    fake.fail_next("GET", "/computes/cpu", 503, after=1)
    provider.create("compute.cpu", COMPUTE, {})
    assert [c.status for c in fake.calls_to("PUT", "/computes/cpu")] == [201]
    assert 503 in [c.status for c in fake.calls_to("GET", "/computes/cpu")]
    assert fake.compute("ml-rg", "ml-ws", "cpu") is not None


def test_final_error_says_what_to_check(provider: AzureProvider, fake: FakeAzure) -> None:
    """A 403 is not retried and the message points at the role assignment."""
    fake.fail_next("PUT", "/computes/cpu", 403)
    with pytest.raises(ProviderError, match="role assignment") as info:
        provider.create("compute.cpu", COMPUTE, {})
    assert "creating compute cpu failed" in str(info.value)
    assert len(fake.calls_to("PUT", "/computes/cpu")) == 1


def test_preflight_checks_region_and_quota(provider: AzureProvider, fake: FakeAzure) -> None:
    """VM size offered in the region, and max_nodes x vCPUs within the free quota."""
    assert provider.preflight("compute.cpu", {**COMPUTE, "vm_priority": "dedicated"}) == []
    assert "not offered" in provider.preflight("compute.cpu",
                                               {**COMPUTE, "vm_size": "Standard_XYZ9"})[0]
    fake.vcpu_quota["standardNCFamily"] = 12
    problems = provider.preflight("compute.gpu", {**COMPUTE, "vm_size": "Standard_NC6",
                                                  "vm_priority": "dedicated", "max_nodes": 4})
    assert "needs 24 dedicated vCPUs of standardNCFamily" in problems[0]


def test_datastore_secrets_are_fingerprinted_never_returned(provider: AzureProvider,
                                                            fake: FakeAzure) -> None:
    """Register with a key, rotate to a SAS token in place, unregister."""
    key = fake.add_storage_account("imagestore", ["images"])
    attrs = {"type": "azure_blob", "account_name": "imagestore", "container_name": "images",
             "account_key": fingerprint(key), "sas_token": None, "endpoint": None}
    provider.create("datastore.images", attrs, {"account_key": key})
    live = provider.read_all()["datastore.images"]
    assert live.owner == "demo"
    assert differences(attrs, live.attrs) == {}
    assert key not in repr(live)
    rotated = {**attrs, "account_key": None, "sas_token": fingerprint("sv=1&sig=x")}
    provider.update("datastore.images", rotated, ["account_key", "sas_token"],
                    {"sas_token": "sv=1&sig=x"})
    assert differences(rotated, provider.read_all()["datastore.images"].attrs) == {}
    provider.delete("datastore.images")
    assert "datastore.images" not in provider.read_all()


def test_uploads_sync_through_blob_metadata(provider: AzureProvider, fake: FakeAzure,
                                            tmp_path: Path, azure_edge: Any) -> None:
    """put (single and in blocks), list with sha256 from metadata, delete; records prune."""
    import hashlib

    hello_sha256 = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    big = bytes(range(256)) * 10
    big_sha256 = hashlib.sha256(big).hexdigest()
    store = provider.file_store("default", "mnist")
    store.single_put_bytes, store.block_bytes = 1000, 400  # type: ignore[attr-defined]
    small, large = tmp_path / "a.txt", tmp_path / "b.bin"
    small.write_bytes(b"hello")
    large.write_bytes(big)
    assert store.put_file(small, "a.txt") == RemoteFile(5, hello_sha256)
    assert store.put_file(large, "sub/b.bin") == RemoteFile(2560, big_sha256)
    # what the service (Azurite) holds, read with a client of its own rather than through
    # the code under test
    [ws] = fake.workspaces.values()
    container = azurite_client(azure_edge.azurite, azure_edge.cert, ACCOUNT, ACCOUNT_KEY
                               ).get_container_client(f"azureml-blobstore-{ws.workspace_id}")
    held = {b.name: (container.download_blob(b.name).readall(), b.metadata.get("amlctl_sha256"))
            for b in container.list_blobs(name_starts_with="mnist/", include=["metadata"])}
    assert held == {"mnist/a.txt": (b"hello", hello_sha256),
                    "mnist/sub/b.bin": (big, big_sha256)}
    committed, _ = container.get_blob_client("mnist/sub/b.bin").get_block_list()
    assert len(committed) == 7  # 2,560 bytes in blocks of 400
    assert store.list_files() == {"a.txt": RemoteFile(5, hello_sha256),
                                  "sub/b.bin": RemoteFile(2560, big_sha256)}
    provider.create("upload.mnist", {"datastore": "default", "target_path": "mnist",
                                     "delete_extra": False, "exclude": [], "src_dir": "x"}, {})
    assert provider.read_all()["upload.mnist"].owner == "demo"
    provider.delete("upload.mnist", include_data=True)
    assert store.list_files() == {}
    assert "upload.mnist" not in provider.read_all()


def test_workspace_tags_and_experiments(provider: AzureProvider) -> None:
    """Workspace tags update in place; experiments carry the owner tag."""
    provider.update("workspace", {**WORKSPACE, "tags": {"team": "vision"}}, ["tags"], {})
    live = provider.read_all()["workspace"]
    assert (live.attrs["tags"], live.owner) == ({"team": "vision"}, "demo")
    provider.create("experiment.mnist", {"tags": {"kind": "tf"}}, {})
    exp = provider.read_all()["experiment.mnist"]
    assert (exp.attrs, exp.owner) == ({"tags": {"kind": "tf"}}, "demo")
    provider.update("experiment.mnist", {"tags": {}}, ["tags"], {})
    assert provider.read_all()["experiment.mnist"].attrs == {"tags": {}}


def test_create_refuses_what_the_region_cannot_hold(provider: AzureProvider,
                                                    fake: FakeAzure) -> None:
    """The checks run before the PUT: nothing is sent that Azure would reject."""
    fake.vcpu_quota["standardNCFamily"] = 6
    with pytest.raises(ProviderError, match="needs 24 dedicated vCPUs"):
        provider.create("compute.gpu", {**COMPUTE, "vm_size": "Standard_NC6",
                                        "vm_priority": "dedicated"}, {})
    assert fake.calls_to("PUT", "/computes/gpu") == []


def test_file_share_datastore_round_trip(provider: AzureProvider, fake: FakeAzure) -> None:
    """An Azure Files share registers and reads back as azure_file with its share_name."""
    key = fake.add_storage_account("sharestore", [])
    attrs = {"type": "azure_file", "account_name": "sharestore", "share_name": "models",
             "account_key": fingerprint(key), "sas_token": None}
    provider.create("datastore.models", attrs, {"account_key": key})
    live = provider.read_all()["datastore.models"]
    assert differences(attrs, live.attrs) == {}
    sent = fake.calls_to("POST", "/datastores")[-1].json()
    assert sent["dataStoreType"] == "AzureFile"
    assert sent["azureStorageSection"]["containerName"] == "models"
