"""Replacing a cluster with an active run, on a terminal: apply asks about the run itself,
even with --auto-approve (the no-terminal case is the replace_busy_cluster story)."""

from __future__ import annotations

import os
import pty
import shutil
import subprocess
from pathlib import Path

from enginekit import amlctl_command, run_amlctl, state_rows, subprocess_env

STORY = Path(__file__).parent / "scenarios" / "replace_busy_cluster"


def apply_on_terminal(folder: Path, answer: str) -> tuple[int, str]:
    """`amlctl apply --auto-approve` with a pseudo-terminal as stdin, answering `answer`."""
    master, slave = pty.openpty()
    try:
        child = subprocess.Popen(amlctl_command("apply", "--auto-approve"), cwd=folder,
                                 env=subprocess_env(), stdin=slave, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True)
        os.close(slave)
        os.write(master, f"{answer}\n".encode())
        out, _ = child.communicate(timeout=120)
    finally:
        os.close(master)
    return child.returncode, out


def vm_size(folder: Path) -> str:
    return next(attrs for kind, _, _, attrs in state_rows(folder) if kind == "compute")


def test_a_terminal_user_is_asked_about_the_runs(tmp_path: Path) -> None:
    shutil.copytree(STORY / "files", tmp_path, dirs_exist_ok=True)
    shutil.copyfile(STORY / "v1.yaml", tmp_path / "amlctl.yaml")
    assert run_amlctl(tmp_path, "apply", "--auto-approve").code == 0
    shutil.copyfile(STORY / "v2.yaml", tmp_path / "amlctl.yaml")
    try:
        code, out = apply_on_terminal(tmp_path, "no")
        assert code == 1, out
        assert "These active runs will be cancelled or lose their compute: " in out
        assert "(long, " in out and "active runs left alone" in out
        assert "Standard_D2_v3" in vm_size(tmp_path)
        code, out = apply_on_terminal(tmp_path, "yes")
        assert code == 0, out
        assert "Apply complete. Resources: 1 added, 0 changed, 1 destroyed." in out
        assert "Standard_D4_v3" in vm_size(tmp_path)
    finally:
        run_amlctl(tmp_path, "destroy", "--auto-approve", "--cancel-runs")
