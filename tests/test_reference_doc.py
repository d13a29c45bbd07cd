"""docs/manifest.md is generated from the models; it must not go stale."""

from pathlib import Path

from amlctl.manifest.reference import reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_manifest_reference_is_current() -> None:
    on_disk = (ROOT / "docs" / "manifest.md").read_text(encoding="utf-8")
    assert on_disk == reference_markdown(), "docs/manifest.md is stale: run `make schema`"


def test_reference_documents_every_run_field() -> None:
    text = reference_markdown()
    for field in ("entry_script", "distribution", "role_arguments", "max_run_duration_seconds",
                  "worker_count", "parameter_server_count", "idle_seconds_before_scaledown"):
        assert f"`{field}`" in text
