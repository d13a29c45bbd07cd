"""Good manifests: every example validates, renders, and its rendering validates again."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from ruamel.yaml import YAML

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
MANIFESTS = sorted(
    p for p in EXAMPLES.rglob("amlctl*.yaml")
    if not any(part.startswith(".") for part in p.relative_to(EXAMPLES).parts)
)
IDS = [str(p.relative_to(EXAMPLES)) for p in MANIFESTS]
SECRET = "s3cr3tValueThatMustNeverPrint000"  # base64, as a storage key is


def read_yaml(text: str) -> object:
    return YAML(typ="safe", pure=True).load(text)


@pytest.fixture
def examples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of examples/ (paths between examples stay valid), as the current folder."""
    copy = tmp_path / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns(".*", "__pycache__"))
    monkeypatch.chdir(copy)
    monkeypatch.delenv("IMAGES_KEY", raising=False)
    return copy


def test_there_are_examples() -> None:
    assert "mnist/amlctl.yaml" in IDS and "azure/amlctl.yaml" in IDS


@pytest.mark.parametrize("manifest", MANIFESTS, ids=IDS)
def test_example_validates(manifest: Path, examples: Path, amlctl) -> None:
    result = amlctl("validate", "-f", str(manifest.relative_to(EXAMPLES)))
    assert result.code == 0, result.stderr
    assert ": valid (stack " in result.stdout


def test_missing_secret_is_a_note_for_validate(examples: Path, amlctl) -> None:
    result = amlctl("validate", "-f", "azure/amlctl.yaml")
    assert result.code == 0
    assert "Note: secret IMAGES_KEY is not set here; plan and apply will need it." in result.stderr


@pytest.mark.parametrize("manifest", MANIFESTS, ids=IDS)
def test_rendering_validates_and_is_a_fixed_point(
    manifest: Path, examples: Path, amlctl
) -> None:
    relative = manifest.relative_to(EXAMPLES)
    first = amlctl("render", "-f", str(relative))
    assert first.code == 0, first.stderr
    assert "{{" not in first.stdout

    rendered = relative.with_name("rendered.yaml")  # beside it, so relative paths still hold
    rendered.write_text(first.stdout)
    check = amlctl("validate", "-f", str(rendered))
    assert check.code == 0, check.stderr

    again = amlctl("render", "-f", str(rendered))
    assert again.code == 0
    assert read_yaml(again.stdout) == read_yaml(first.stdout)


def test_single_expression_renders_as_a_native_int(examples: Path, amlctl) -> None:
    source = read_yaml((examples / "mnist/amlctl.yaml").read_text())
    assert source["computes"]["cpu-cluster"]["max_nodes"] == "{{ vars.nodes }}"

    data = read_yaml(amlctl("render", "-f", "mnist/amlctl.yaml").stdout)
    assert data["computes"]["cpu-cluster"]["max_nodes"] == 2
    assert type(data["computes"]["cpu-cluster"]["max_nodes"]) is int


def test_var_on_the_command_line_overrides_the_manifest(examples: Path, amlctl) -> None:
    result = amlctl("--var", "nodes=3", "render", "-f", "mnist/amlctl.yaml")
    assert result.code == 0
    data = read_yaml(result.stdout)
    assert data["computes"]["cpu-cluster"]["max_nodes"] == 3
    assert data["vars"]["nodes"] == 3


def test_var_file_overrides_the_manifest_and_var_overrides_both(
    examples: Path, amlctl
) -> None:
    Path("prod.yaml").write_text("nodes: 4\ntrain_steps: 50\n")
    result = amlctl("--var-file", "prod.yaml", "render", "-f", "mnist/amlctl.yaml")
    data = read_yaml(result.stdout)
    assert data["computes"]["cpu-cluster"]["max_nodes"] == 4
    assert data["runs"]["tf-mnist"]["arguments"]["--train_steps"] == 50

    result = amlctl("--var-file", "prod.yaml", "--var", "nodes=5", "render",
                    "-f", "mnist/amlctl.yaml")
    assert read_yaml(result.stdout)["computes"]["cpu-cluster"]["max_nodes"] == 5


def test_var_that_breaks_a_rule_is_reported_at_its_use(examples: Path, amlctl) -> None:
    result = amlctl("--var", "nodes=1", "validate", "-f", "mnist/amlctl.yaml")
    assert result.code == 1
    assert "runs.tf-mnist.distribution.node_count: node_count (2) is greater than " \
           "max_nodes (1) of compute 'cpu-cluster'" in result.stderr


def test_secret_is_redacted_and_never_printed(
    examples: Path, amlctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGES_KEY", SECRET)
    for command in ("render", "validate"):
        result = amlctl(command, "-f", "azure/amlctl.yaml")
        assert result.code == 0
        assert SECRET not in result.stdout + result.stderr
    data = read_yaml(amlctl("render", "-f", "azure/amlctl.yaml").stdout)
    assert data["datastores"]["images"]["account_key"] == "(sensitive)"


def test_secret_is_never_printed_in_an_error(
    examples: Path, amlctl, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IMAGES_KEY", SECRET)
    manifest = Path("azure/amlctl.yaml")
    text = manifest.read_text().replace(
        "    container_name: images\n",
        "    container_name: images\n    endpoint: \"{{ secret_env('IMAGES_KEY') }}\"\n"
        "    prevent_destroy: \"{{ secret_env('IMAGES_KEY') }}\"\n",
    )
    manifest.write_text(text)
    result = amlctl("validate", "-f", str(manifest))
    assert result.code == 1
    assert "datastores.images.prevent_destroy: must be a boolean (got a secret)" in result.stderr
    assert SECRET not in result.stdout + result.stderr
