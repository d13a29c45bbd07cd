"""Saved plans travel between CI jobs: a plan made in one checkout applies in another checkout
of the same commit at another path, and is refused when the manifest, the live state or the
backend differ. Real `amlctl` processes on the local backend (state in `.amlctl/` beside each
checkout's manifest), each with its own HOME, as two pipeline jobs would run them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from enginekit import CliResult, run_amlctl, write_basic


def checkout(folder: Path) -> Path:
    """A repository checkout holding the manifest under `infra/`."""
    (folder / "infra").mkdir(parents=True)
    write_basic(folder / "infra")
    return folder


def clone(source: Path, target: Path) -> Path:
    """Another checkout of the same commit: the files, not the state a job left behind."""
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(".amlctl"))
    return target


def job(repo: Path, home: Path, *args: str) -> CliResult:
    home.mkdir(parents=True, exist_ok=True)
    return run_amlctl(repo, *args, HOME=str(home))


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_a_plan_made_in_one_checkout_applies_in_another(tmp_path: Path) -> None:
    first = checkout(tmp_path / "runner-1" / "build" / "repo")
    second = clone(first, tmp_path / "runner-2" / "w" / "repo")
    planned = job(first, tmp_path / "home-1", "plan", "-f", "infra/amlctl.yaml",
                  "--out", str(tmp_path / "artifact.plan"))
    assert planned.code == 0, planned.stderr
    body = json.loads((tmp_path / "artifact.plan").read_text())
    assert body["manifest"] == "infra/amlctl.yaml" and body["backend"] == "local"
    assert str(tmp_path) not in (tmp_path / "artifact.plan").read_text()  # no machine path
    before = tree(first)

    applied = job(second, tmp_path / "home-2", "apply", str(tmp_path / "artifact.plan"))
    assert applied.code == 0, applied.stderr
    assert "Apply complete. Resources: 6 added" in applied.stdout
    assert tree(first) == before  # the first checkout was neither read for state nor written
    assert (second / "infra" / ".amlctl" / "state.db").is_file()
    again = job(second, tmp_path / "home-2", "plan", "-f", "infra/amlctl.yaml",
                "--detailed-exitcode")
    assert again.code == 0 and "No changes." in again.stdout, again.stdout + again.stderr


def test_a_travelling_plan_is_refused_when_anything_differs(tmp_path: Path) -> None:
    first = checkout(tmp_path / "a" / "repo")
    plan_file = str(tmp_path / "artifact.plan")
    assert job(first, tmp_path / "h", "plan", "-f", "infra/amlctl.yaml", "--out",
               plan_file).code == 0

    edited = clone(first, tmp_path / "b" / "repo")
    write_basic(edited / "infra", max_nodes=5)
    refused = job(edited, tmp_path / "h", "apply", plan_file)
    assert refused.code == 1
    assert "the saved plan is stale: the manifest changed since it was made" in refused.stderr
    assert "Resources:" not in refused.stdout

    moved_on = clone(first, tmp_path / "c" / "repo")
    assert job(moved_on, tmp_path / "h", "apply", "-f", "infra/amlctl.yaml", "--auto-approve",
               "--target", "compute.cpu").code == 0
    refused = job(moved_on, tmp_path / "h", "apply", plan_file)
    assert refused.code == 1
    assert "the saved plan is stale: the live workspace changed" in refused.stderr

    other_backend = clone(first, tmp_path / "d" / "repo")
    refused = job(other_backend, tmp_path / "h", "--backend", "azure", "apply", plan_file)
    assert refused.code == 1
    assert "the saved plan was made for the local backend, not azure" in refused.stderr
    assert not (other_backend / "infra" / ".amlctl").exists()

    elsewhere = tmp_path / "e"
    elsewhere.mkdir()
    refused = job(elsewhere, tmp_path / "h", "apply", plan_file)
    assert refused.code == 1
    assert "the plan was made for the manifest infra/amlctl.yaml, which is not here" in \
        refused.stderr
    assert "Traceback" not in refused.stderr
