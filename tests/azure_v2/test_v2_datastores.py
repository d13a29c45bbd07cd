"""Datastores through SDK v2 and SDK v1 on one fake workspace: what one registers, the other
reads back identically (secrets only as fingerprints), and ownership is shared. (v1's run
history, which its read_all also lists, is the in-memory double: not what this is about.)"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_v2 import FakeV2Azure
from history_double import HistoryDouble
from v2_support import SUBSCRIPTION, FakeTokenCredential

from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.azure_v2.provider import AzureV2Provider
from amlctl.providers.base import OWNER_TAG, fingerprint

STACK = "data"
WORKSPACE = {"name": "data-ws", "subscription_id": SUBSCRIPTION, "resource_group": "data-rg",
             "location": "westeurope", "create_resource_group": False, "tags": {},
             "prevent_destroy": False}
BLOB = {"type": "azure_blob", "account_name": "trainingdata", "container_name": "images",
        "account_key": None, "sas_token": None, "endpoint": None}
SHARE = {"type": "azure_file", "account_name": "trainingdata", "share_name": "scratch",
         "account_key": None, "sas_token": None}


@pytest.fixture
def both(fake: FakeV2Azure, token_auth: Any, tmp_path: Path
         ) -> tuple[AzureV2Provider, AzureProvider]:
    fake.add_workspace("data-rg", "data-ws", tags={OWNER_TAG: STACK})
    key = fake.add_storage_account("trainingdata", ["images"])
    BLOB_KEY.clear()
    BLOB_KEY.append(key)
    policy = RetryPolicy(attempts=3, sleep=lambda _s: None)
    settings = ComputeSettings(sleep=lambda _s: None)
    return (AzureV2Provider(WORKSPACE, STACK, tmp_path, credential=FakeTokenCredential(),
                            cloud="AzureCloud", policy=policy, compute_settings=settings),
            AzureProvider(WORKSPACE, STACK, tmp_path, auth=token_auth, cloud="AzureCloud",
                          run_service=HistoryDouble(), policy=policy,
                          compute_settings=settings))


BLOB_KEY: list[str] = []


def test_registered_by_v2_reads_the_same_on_v1(both: tuple[AzureV2Provider, AzureProvider]
                                               ) -> None:
    v2, v1 = both
    v2.create("datastore.images", BLOB, {"account_key": BLOB_KEY[0]})
    v2.create("datastore.scratch", SHARE, {"sas_token": "sv=2021&sig=abc"})
    by_v2, by_v1 = v2.read_all(), v1.read_all()
    for address in ("datastore.images", "datastore.scratch"):
        assert by_v2[address] == by_v1[address]
        assert by_v2[address].owner == STACK
    assert by_v2["datastore.images"].attrs["account_key"] == fingerprint(BLOB_KEY[0])
    assert by_v2["datastore.scratch"].attrs == {**SHARE, "sas_token": fingerprint(
        "sv=2021&sig=abc")}


def test_registered_by_v1_reads_the_same_on_v2(both: tuple[AzureV2Provider, AzureProvider]
                                               ) -> None:
    v2, v1 = both
    v1.create("datastore.images", BLOB, {"account_key": BLOB_KEY[0]})
    assert v2.read_all()["datastore.images"] == v1.read_all()["datastore.images"]


def test_a_rotated_key_is_a_change_applied_in_place(
        both: tuple[AzureV2Provider, AzureProvider], fake: FakeV2Azure) -> None:
    v2, _ = both
    v2.create("datastore.images", BLOB, {"account_key": BLOB_KEY[0]})
    before = v2.read_all()["datastore.images"].attrs["account_key"]
    assert "account_key" in v2.updatable_fields("datastore")
    v2.update("datastore.images", BLOB, ["account_key"], {"account_key": "bmV3LWtleQ=="})
    after = v2.read_all()["datastore.images"].attrs["account_key"]
    assert before != after == fingerprint("bmV3LWtleQ==")
    bodies = [c.body.decode() for c in fake.calls_to("PUT", "/datastores/images")]
    assert len(bodies) == 2 and "bmV3LWtleQ==" in bodies[1]


def test_delete_unregisters_and_forgets_the_owner(
        both: tuple[AzureV2Provider, AzureProvider]) -> None:
    v2, v1 = both
    v2.create("datastore.images", BLOB, {"account_key": BLOB_KEY[0]})
    v2.delete("datastore.images")
    v2.delete("datastore.images")  # gone already: fine
    assert "datastore.images" not in v2.read_all()
    assert "datastore.images" not in v1.read_all()


def test_uploads_use_the_v1_blob_sync_on_the_v2_storage_client(
        both: tuple[AzureV2Provider, AzureProvider], tmp_path: Path) -> None:
    """The content-hash sync of the v1 backend (blobfiles.py) over azure-storage-blob: one PUT
    for a small file, blocks for a large one; v1 lists the same files with the same hashes."""
    import hashlib

    from amlctl.providers.azure.blobfiles import BlobFileStore

    v2, v1 = both
    small, large = tmp_path / "small.txt", tmp_path / "large.bin"
    small.write_bytes(b"hello")
    large.write_bytes(bytes(range(256)) * 40)  # 10 KiB: blocks with the sizes below
    store = v2.file_store("default", "data")
    blocks = BlobFileStore(store.container, "data", store.policy, single_put_bytes=1024,
                           block_bytes=4096)
    blocks.put_file(small, "small.txt")
    blocks.put_file(large, "deep/large.bin")
    listed_v1 = v1.file_store("default", "data").list_files()
    assert listed_v1 == store.list_files()
    assert listed_v1["deep/large.bin"].sha256 == hashlib.sha256(large.read_bytes()).hexdigest()
    assert listed_v1["small.txt"].size == 5
