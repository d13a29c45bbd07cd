"""Requests per plan on the azure backend grow with the kinds of resources, not their number.

The real azureml SDK runs against the fake service (only the network edge is replaced) and
the fake records every HTTP request; runs go to the in-memory history double. A stack of
50 clusters, 20 datastores, 10 uploads and 10 runs is applied, then planned; the plan's
requests are counted and compared with those of a stack of 1 of each.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure
from history_double import HistoryDouble
from scale_manifest import (
    RESOURCE_GROUP,
    STACK,
    WORKSPACE,
    counted_requests,
    noop_plan_requests,
)

from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.base import OWNER_TAG


def plan_requests(folder: Path, fake: FakeAzure, token_auth: Any,
                  monkeypatch: pytest.MonkeyPatch, **counts: int) -> Counter[str]:
    """Requests of a no-change plan of a scale manifest applied with the azure backend."""
    history = HistoryDouble()  # the runs the apply submitted, seen again by the plan

    def make_provider(workspace: dict[str, Any], state: Path) -> AzureProvider:
        return AzureProvider(workspace, STACK, state, auth=token_auth, cloud="AzureCloud",
                             run_service=history, policy=RetryPolicy(sleep=lambda _s: None),
                             compute_settings=ComputeSettings(sleep=lambda _s: None))

    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    return noop_plan_requests(folder, fake, "azure", make_provider, monkeypatch.setenv,
                              **counts)


def test_requests_per_plan_do_not_grow_with_resources(fake: FakeAzure, token_auth: Any,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    small = plan_requests(tmp_path / "small", fake, token_auth, monkeypatch,
                          computes=1, datastores=1, uploads=1, runs=1)
    fake.reset()
    big = plan_requests(tmp_path / "big", fake, token_auth, monkeypatch,
                        computes=50, datastores=20, uploads=10, runs=10)
    # One listing of each upload's target folder (its files) is inherent; every other
    # request is made once per plan, whatever the number of clusters, datastores or runs.
    assert big["LIST upN/"] == 10 and small["LIST upN/"] == 1
    assert {k: v for k, v in big.items() if k != "LIST upN/"} == \
        {k: v for k, v in small.items() if k != "LIST upN/"}
    assert small["LIST .amlctl/objects/"] == 1  # every ownership record, one listing
    assert all(count == 1 for key, count in small.items()), small


def test_records_written_before_metadata_are_still_read(fake: FakeAzure, token_auth: Any,
                                                         tmp_path: Path) -> None:
    """An ownership record without a metadata copy (older amlctl) is downloaded and read."""
    fake.add_workspace(RESOURCE_GROUP, WORKSPACE, tags={OWNER_TAG: STACK})
    workspace = {"name": WORKSPACE, "subscription_id": SUBSCRIPTION,
                 "resource_group": RESOURCE_GROUP, "location": "westeurope",
                 "create_resource_group": False, "tags": {}, "prevent_destroy": False}

    def provider() -> AzureProvider:
        return AzureProvider(workspace, STACK, tmp_path, auth=token_auth, cloud="AzureCloud",
                             run_service=HistoryDouble(),
                             policy=RetryPolicy(sleep=lambda _s: None))

    provider().create("upload.new", {"datastore": "default", "target_path": "new"}, {})
    provider()._records().container.upload_blob(
        ".amlctl/objects/upload/old.json",
        b'{"datastore": "default", "owner": "scale", "target_path": "old"}')
    with counted_requests() as seen:
        live = provider().read_all()
    assert live["upload.new"].owner == live["upload.old"].owner == STACK
    assert live["upload.old"].attrs == {"datastore": "default", "target_path": "old"}
    downloads = [url for method, url in seen if method == "GET" and "/.amlctl/objects/" in url]
    assert downloads and all(u.endswith("/upload/old.json") for u in downloads), downloads
