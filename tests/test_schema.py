"""schemas/amlctl.schema.json is generated from the models: it must match them, and every
example manifest must point editors at it."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from amlctl.cli import main

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = ROOT / "schemas" / "amlctl.schema.json"
EXAMPLES = sorted(
    p for p in (ROOT / "examples").rglob("amlctl*.yaml")
    if not any(part.startswith(".") for part in p.relative_to(ROOT / "examples").parts)
)
MODELINE = re.compile(r"^# yaml-language-server: \$schema=(?P<url>\S+)$")


def generated(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        main(["schema", *args])
    assert exit_.value.code == 0
    return capsys.readouterr().out


def test_committed_schema_is_current(capsys: pytest.CaptureFixture[str]) -> None:
    assert SCHEMA.read_text(encoding="utf-8") == generated(capsys), (
        "schemas/amlctl.schema.json is stale: run `make schema` and commit the result"
    )


def test_schema_output_file_matches_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "out" / "schema.json"
    text = generated(capsys)
    generated(capsys, "-o", str(target))
    assert target.read_text(encoding="utf-8") == text


def test_schema_describes_the_manifest(capsys: pytest.CaptureFixture[str]) -> None:
    schema = json.loads(generated(capsys))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert set(schema["required"]) == {"version", "name", "workspace"}
    assert schema["additionalProperties"] is False
    for name, definition in [("Manifest", schema), *schema["$defs"].items()]:
        for field, spec in definition.get("properties", {}).items():
            assert spec.get("description"), f"{name}.{field} has no description"


@pytest.mark.parametrize("manifest", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_example_points_editors_at_the_schema(manifest: Path) -> None:
    first = manifest.read_text(encoding="utf-8").splitlines()[0]
    match = MODELINE.match(first)
    assert match, f"{manifest.name} must start with '# yaml-language-server: $schema=...'"
    assert (manifest.parent / match.group("url")).resolve() == SCHEMA


def check_jsonschema(*manifests: Path) -> subprocess.CompletedProcess[str]:
    """Run check-jsonschema (a third-party validator, as editors use the schema) on files."""
    tool = Path(sys.executable).with_name("check-jsonschema")
    assert tool.exists(), (
        "check-jsonschema is not installed in this environment: `pip install -e '.[dev]'`")
    return subprocess.run([str(tool), "--schemafile", str(SCHEMA), *map(str, manifests)],
                          capture_output=True, text=True, timeout=120, check=False)


def readme_manifest(tmp_path: Path) -> Path:
    """The README's manifest (its first YAML block holding `version: 1`), as a file."""
    blocks = re.findall(r"```yaml\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    manifest = next(b for b in blocks if "version: 1" in b)
    path = tmp_path / "readme.yaml"
    path.write_text(manifest)
    return path


def test_check_jsonschema_accepts_the_examples_and_the_readme(tmp_path: Path) -> None:
    files = [*EXAMPLES, readme_manifest(tmp_path)]
    assert len(files) >= 3
    result = check_jsonschema(*files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_jsonschema_rejects_a_bad_manifest(tmp_path: Path) -> None:
    text = readme_manifest(tmp_path).read_text()
    bad = tmp_path / "bad.yaml"
    # a word where a number or a template belongs, and a key no model knows
    bad.write_text(text.replace("max_nodes: ", "max_nodes: lots #", 1)
                   .replace("computes:", "computers: {}\ncomputes:", 1))
    result = check_jsonschema(bad)
    assert result.returncode == 1
    assert "max_nodes" in result.stdout and "'lots'" in result.stdout
    assert "computers" in result.stdout
