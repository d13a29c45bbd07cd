"""An upload never sends amlctl's own state folder (databases, run snapshots, secrets), even
when src_dir is the manifest's folder; an empty src_dir is refused at validate."""

from __future__ import annotations

from pathlib import Path

import pytest
from enginekit import Cli


def use_src_dir(project: Path, src_dir: str) -> None:
    manifest = project / "amlctl.yaml"
    manifest.write_text(manifest.read_text().replace("src_dir: data", f"src_dir: {src_dir!r}"))


def uploaded(project: Path, home: Path) -> set[str]:
    [digits] = home.glob("workspaces/*/datastores/default/digits")
    return {p.relative_to(digits).as_posix() for p in digits.rglob("*") if p.is_file()}


@pytest.mark.parametrize("home", [".amlctl", "state/inner"])
def test_src_dir_dot_never_uploads_the_state_folder(
    project: Path, cli: Cli, monkeypatch: pytest.MonkeyPatch, home: str
) -> None:
    if home != ".amlctl":
        monkeypatch.setenv("AMLCTL_HOME", str(project / home))
        (project / ".amlctl").mkdir()  # an old default state folder: not uploaded either
        (project / ".amlctl" / "secrets.json").write_text("{}")
    use_src_dir(project, ".")
    assert cli("apply", "--auto-approve").code == 0
    files = uploaded(project, project / home)
    assert "amlctl.yaml" in files and "data/part-0.csv" in files
    assert not [f for f in files if f.startswith((".amlctl/", "state/"))], files
    result = cli("plan")
    assert result.code == 0 and "No changes." in result.stdout, result  # converged


def test_src_dir_inside_the_state_folder_is_refused(project: Path, cli: Cli) -> None:
    assert cli("apply", "--auto-approve").code == 0
    use_src_dir(project, ".amlctl/workspaces")
    result = cli("plan")
    assert result.code == 1
    assert "src_dir is amlctl's state folder" in result.stderr
    assert "Traceback" not in result.stderr


def test_empty_src_dir_is_refused_at_validate(project: Path, cli: Cli) -> None:
    use_src_dir(project, "")
    result = cli("validate")
    assert result.code == 1
    assert "amlctl.yaml:23:5: uploads.digits.src_dir: must not be empty" in result.stderr, result
