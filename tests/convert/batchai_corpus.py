"""Where the converter tests find their inputs (imported by the tests and conftest)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden"
# The real Batch AI files live beside the project (read-only); the repository keeps only the
# few copies the golden and secret tests need.
SHARED = HERE.parents[1] / ".." / "shared" / "batchai"


def corpus_files() -> list[Path]:
    """Every Batch AI cluster and job file of the shared corpus (not the JSON Schemas)."""
    if not SHARED.is_dir():
        return []
    return sorted(p for p in SHARED.glob("*.json") if not p.name.startswith("schema-"))


def kind_of(path: Path) -> str:
    """`cluster` or `job`, from the corpus's file naming."""
    return "cluster" if ".cluster" in path.name else "job"
