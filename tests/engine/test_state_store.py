"""The stack's state on the local backend: `state pull`, stack identity, lost backend data.

Real processes' state: SQLite in `.amlctl/`, driven through the CLI in-process.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from enginekit import Cli, write_basic


def test_state_pull_prints_the_applied_record(basic_project: Path, cli: Cli) -> None:
    assert cli("apply", "--auto-approve").code == 0
    pulled = cli("state", "pull")
    assert pulled.code == 0, pulled
    state = json.loads(pulled.stdout)
    assert Path(state["location"]).resolve() == basic_project / ".amlctl" / "engine.db"
    assert state["identity"]["origin"] == {"manifest": "amlctl.yaml"}
    assert set(state["applied"]) == {"workspace", "compute.cpu", "compute.gpu",
                                     "datastore.images", "experiment.train", "upload.digits"}
    assert state["applied"]["compute.cpu"]["attrs"]["max_nodes"] == 2
    assert {e["state"] for e in state["journal"]} == {"done"}


def test_a_second_manifest_with_the_same_name_is_refused(
        project: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two manifests named `story` sharing one state folder: the second would prune the
    first's resources, so it is refused until it is knowingly rebound."""
    monkeypatch.setenv("AMLCTL_HOME", str(project / "shared-state"))
    for team in ("team-a", "team-b"):
        (project / team).mkdir()
        write_basic(project / team)
    (project / ".git").mkdir()  # both in one repository: told apart by their paths in it
    assert cli("apply", "-f", "team-a/amlctl.yaml", "--auto-approve").code == 0
    refused = cli("plan", "-f", "team-b/amlctl.yaml")
    assert refused.code == 1
    assert ("stack 'story' in " in refused.stderr
            and "belongs to another manifest (manifest team-a/amlctl.yaml, stack id "
            in refused.stderr)
    assert "this is manifest team-b/amlctl.yaml" in refused.stderr
    assert cli("apply", "-f", "team-b/amlctl.yaml", "--auto-approve").code == 1
    # the manifest moved for real: rebinding is explicit
    rebound = cli("state", "rebind", "-f", "team-b/amlctl.yaml")
    assert rebound.code == 0, rebound
    assert "it is now manifest team-b/amlctl.yaml" in rebound.stdout
    assert "No changes." in cli("plan", "-f", "team-b/amlctl.yaml").stdout
    assert cli("plan", "-f", "team-a/amlctl.yaml").code == 1


def test_lost_backend_data_stops_the_plan(basic_project: Path, cli: Cli) -> None:
    """state.db deleted while the state records applies: recreating everything (and
    resubmitting runs) must be a knowing choice."""
    assert cli("apply", "--auto-approve").code == 0
    (basic_project / ".amlctl" / "state.db").unlink()
    stopped = cli("plan")
    assert stopped.code == 1
    assert "records 6 applied resources of stack 'story', but the workspace 'story-ws' " \
           "does not exist" in stopped.stderr
    assert "amlctl state forget" in stopped.stderr
    assert cli("apply", "--auto-approve").code == 1
    forgot = cli("state", "forget")
    assert forgot.code == 0 and "Forgot 6 applied records" in forgot.stdout
    again = cli("apply", "--auto-approve")
    assert again.code == 0 and "6 added" in again.stdout


@pytest.mark.parametrize(("block", "expected"), [
    ("state: {account: Bad_Account, container: tfstate}", "state.account"),
    ("state: {account: acct, container: tfstate, key: ../up.json}", "state.key"),
])
def test_a_bad_state_block_is_a_manifest_error(basic_project: Path, cli: Cli, block: str,
                                               expected: str) -> None:
    manifest = basic_project / "amlctl.yaml"
    manifest.write_text(manifest.read_text() + block + "\n")
    result = cli("validate")
    assert result.code == 1
    assert f"amlctl.yaml:{len(manifest.read_text().splitlines())}:" in result.stderr
    assert expected in result.stderr
