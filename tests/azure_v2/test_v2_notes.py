"""What the azure-v2 backend's plan says about a workspace it is about to create (the real
azure-ai-ml listing workspaces through the fake edge), in the v1 backend's words."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fake_v2 import FakeV2Azure
from v2_support import SUBSCRIPTION, FakeTokenCredential

from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.azure_v2.provider import AzureV2Provider


def workspace(name: str, group: str = "ml-rg", create_group: bool = False) -> dict[str, Any]:
    return {"name": name, "subscription_id": SUBSCRIPTION, "resource_group": group,
            "location": "westeurope", "create_resource_group": create_group, "tags": {},
            "prevent_destroy": False}


def provider(attrs: dict[str, Any], credential: FakeTokenCredential,
             tmp_path: Path) -> AzureV2Provider:
    return AzureV2Provider(attrs, "notes", tmp_path / ".amlctl", credential=credential,
                           cloud="AzureCloud",
                           policy=RetryPolicy(attempts=2, sleep=lambda _s: None))


def test_a_workspace_name_matching_nothing_is_said_plainly(
        fake: FakeV2Azure, credential: FakeTokenCredential, tmp_path: Path) -> None:
    fake.add_workspace("ml-rg", "ml-workspace")
    fake.add_workspace("ml-rg", "other-ws")
    fake.add_workspace("elsewhere-rg", "ml-workspace2")
    typo = provider(workspace("ml-wrokspace"), credential, tmp_path)
    assert typo.read_all() == {}
    notes = typo.create_notes("workspace", {})
    assert notes[0].startswith("workspace 'ml-wrokspace' does not exist in resource group "
                               "'ml-rg': a NEW workspace will be created")
    assert notes[1] == ("the resource group has 2 workspaces: ml-workspace, other-ws; "
                        "did you mean 'ml-workspace'?")
    assert typo.create_notes("compute.cpu", {}) == []
    lonely = provider(workspace("ml-ws", group="new-rg"), credential, tmp_path)
    assert lonely.create_notes("workspace", {}) == [
        "resource group 'new-rg' does not exist, and create_resource_group is not set: apply "
        "will fail; create the group or set create_resource_group: true"]
    made = provider(workspace("ml-ws", group="new-rg", create_group=True), credential,
                    tmp_path)
    assert made.create_notes("workspace", {}) == [
        "resource group 'new-rg' does not exist either: both are created"]
    fake.fail_next("GET", "/Microsoft.MachineLearningServices/workspaces", 403)
    (only,) = typo.create_notes("workspace", {})  # no right to list: still said plainly
    assert "a NEW workspace will be created" in only
    assert fake.failures[-1].times == 0  # the listing was refused
