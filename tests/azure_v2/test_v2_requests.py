"""Requests per plan on the azure-v2 backend grow with the kinds of resources, not their number
(the v2 twin of tests/azure/test_azure_requests.py).

The real azure-ai-ml runs against the fake edge (blob storage in Azurite) and every HTTP
request is recorded: a stack is applied (its runs submitted as jobs), then planned by a fresh
provider, as a new process would; the plan's requests are counted by kind and compared with
those of a stack of 1 of each.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from fake_v2 import FakeV2Azure
from scale_manifest import (
    RESOURCE_GROUP,
    STACK,
    WORKSPACE,
    noop_plan_requests,
)
from v2_support import SUBSCRIPTION, FakeTokenCredential

from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.azure_v2.provider import AzureV2Provider


def make_provider(workspace: dict[str, Any], state: Path,
                  credential: FakeTokenCredential) -> AzureV2Provider:
    return AzureV2Provider(workspace, STACK, state, credential=credential, cloud="AzureCloud",
                           policy=RetryPolicy(sleep=lambda _s: None),
                           compute_settings=ComputeSettings(sleep=lambda _s: None))


def plan_requests(folder: Path, fake: FakeV2Azure, credential: FakeTokenCredential,
                  monkeypatch: pytest.MonkeyPatch, **counts: int) -> Counter[str]:
    """Requests of a no-change plan of a scale manifest applied with the azure-v2 backend
    (its runs submitted as jobs)."""
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    counted = noop_plan_requests(folder, fake, "azure-v2",
                                 lambda ws, state: make_provider(ws, state, credential),
                                 monkeypatch.setenv, **counts)
    assert len(fake.job_bodies(RESOURCE_GROUP, WORKSPACE)) == counts["runs"]
    return counted


def test_requests_per_plan_do_not_grow_with_runs(fake: FakeV2Azure,
                                                 credential: FakeTokenCredential,
                                                 tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    small = plan_requests(tmp_path / "small", fake, credential, monkeypatch,
                          computes=1, datastores=1, uploads=1, runs=1)
    fake.reset()
    big = plan_requests(tmp_path / "big", fake, credential, monkeypatch,
                        computes=3, datastores=2, uploads=2, runs=4)
    jobs = [k for k in big if k.startswith("GET /WS/jobs")]
    assert [big[k] for k in jobs] == [1], big  # the workspace's jobs, listed once per plan
    assert big["GET /WS"] == 1, "opening the state and reading the workspace share one GET"
    # Inherent, one per resource: a listing of each upload's target folder, and each
    # datastore's secrets (ARM lists datastores without them; SDK v2 then asks each one's
    # `listSecrets`, which the plan needs to see a rotated key). Nothing else grows.
    per_item = ("LIST upN/", "POST /WS/datastores/dsN/listSecrets")
    assert [big[k] for k in per_item] == [2, 2] and [small[k] for k in per_item] == [1, 1]
    assert {k: v for k, v in big.items() if k not in per_item} == \
        {k: v for k, v in small.items() if k not in per_item}
