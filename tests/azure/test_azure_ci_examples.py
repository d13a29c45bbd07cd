"""The shipped CI examples stay valid YAML and keep the documented flow: a markdown plan with
--detailed-exitcode on pull requests, a saved plan applied exactly on main."""

from __future__ import annotations

from pathlib import Path

import pytest
from ruamel.yaml import YAML

CI = Path(__file__).resolve().parents[2] / "examples" / "ci"


@pytest.mark.parametrize("name", ["github-actions.yml", "azure-pipelines.yml"])
def test_ci_example_plans_on_prs_and_applies_the_saved_plan(name: str) -> None:
    text = (CI / name).read_text()
    YAML(typ="safe").load(text)  # parses
    assert "pip install 'amlctl[azure]'" in text
    assert "amlctl plan --detailed-exitcode --format markdown" in text
    assert "amlctl plan --detailed-exitcode --out plan.amlctl" in text
    assert "amlctl apply plan.amlctl" in text
    for variable in ("AZURE_TENANT_ID", "AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"):
        assert variable in text
