"""Run environments: the default interpreter, and pip environments built once and shared."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

from amlctl.providers.local.runs import status
from amlctl.providers.local.runs.envs import MARKER, ensure_env, env_hash
from tests.runs.conftest import RunEnv


def make_wheel(folder: Path, name: str = "tinypkg", version: str = "1.0") -> Path:
    """A minimal pure-Python wheel, so pip installs something real without any index."""
    path = folder / f"{name}-{version}-py3-none-any.whl"
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": f"VERSION = {version!r}\n",
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         "Tag: py3-none-any\n",
    }
    files[f"{info}/RECORD"] = "".join(f"{p},,\n" for p in files) + f"{info}/RECORD,,\n"
    with zipfile.ZipFile(path, "w") as archive:
        for member, text in files.items():
            archive.writestr(member, text)
    return path


def test_no_pip_packages_means_amlctls_own_interpreter(tmp_path: Path) -> None:
    assert ensure_env(tmp_path, []) == Path(sys.executable)
    assert not (tmp_path / "envs").exists()


def test_an_environment_is_built_once_and_sees_amlctls_packages(tmp_path: Path) -> None:
    python = ensure_env(tmp_path, ["anything==1.0"], install=False)
    env_dir = tmp_path / "envs" / env_hash(["anything==1.0"])
    assert python == env_dir / "bin" / "python" and (env_dir / MARKER).exists()
    probe = subprocess.run([python, "-c", "import sys, pydantic, amlctl; print(sys.prefix)"],
                           capture_output=True, text=True, check=True)
    assert Path(probe.stdout.strip()) == env_dir
    built_at = (env_dir / MARKER).stat().st_mtime_ns
    started = time.monotonic()
    assert ensure_env(tmp_path, ["anything==1.0"], install=False) == python
    assert time.monotonic() - started < 0.1
    assert (env_dir / MARKER).stat().st_mtime_ns == built_at


def test_a_half_built_environment_is_rebuilt(tmp_path: Path) -> None:
    env_dir = tmp_path / "envs" / env_hash(["x"])
    (env_dir / "bin").mkdir(parents=True)
    (env_dir / "junk").write_text("left by a killed build")
    python = ensure_env(tmp_path, ["x"], install=False)
    assert not (env_dir / "junk").exists() and python.exists()


def test_concurrent_builders_share_one_build(tmp_path: Path) -> None:
    results: list[Path] = []
    threads = [threading.Thread(target=lambda: results.append(
        ensure_env(tmp_path, ["shared"], install=False))) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and results[0].exists()
    assert [p.name for p in (tmp_path / "envs").iterdir() if p.is_dir()] == [results[0]
                                                                            .parent.parent.name]


def test_a_run_with_pip_packages_gets_them(env: RunEnv) -> None:
    wheel = make_wheel(env.tmp)
    (env.source / "uses.py").write_text(
        "import pathlib, sys, tinypkg\n"
        "pathlib.Path('outputs/seen').write_text(tinypkg.VERSION + ' ' + sys.prefix)\n")
    row = env.submit(entry_script="uses.py", environment={"pip": [str(wheel)]})
    final = env.wait(row, timeout=60)
    assert final.status == status.COMPLETED, final.error
    version, prefix = Path(final.run_dir, "outputs", "seen").read_text().split()
    assert version == "1.0"
    assert Path(prefix).parent == env.home / "envs"


def test_a_failing_pip_install_fails_the_run_with_its_output(env: RunEnv) -> None:
    missing = env.tmp / "no-such-1.0-py3-none-any.whl"
    row = env.submit(environment={"pip": [str(missing)]})
    final = env.wait(row, timeout=60)
    assert final.status == status.FAILED
    assert (final.error or "").startswith("environment build failed: pip exited with code")
    assert "no-such" in final.error
