"""Where the converter tests find their inputs (imported by the tests and conftest)."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent
# Byte-exact copies of real Batch AI files (see fixtures/README.md), kept in the repository so the
# corpus tests run on every clone.
FIXTURES = HERE / "fixtures"
GOLDEN = HERE / "golden"


def corpus_files() -> list[Path]:
    """Every Batch AI cluster and job file of the corpus."""
    return sorted(FIXTURES.glob("*.json"))


def kind_of(path: Path) -> str:
    """`cluster` or `job`, from the corpus's file naming."""
    return "cluster" if ".cluster" in path.name else "job"
