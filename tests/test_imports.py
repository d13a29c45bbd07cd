"""Commands that only read a manifest stay light: no Azure SDK, nothing heavy they do not use.

Each command runs in a fresh interpreter that records `sys.modules` when it exits.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST = ROOT / "examples" / "mnist" / "amlctl.yaml"
AZURE = ROOT / "examples" / "azure" / "amlctl.yaml"
PLAIN = """\
version: 1
name: plain
workspace: {name: plain-ws, subscription_id: "0", resource_group: rg, location: westeurope}
"""
PROBE = """\
import atexit, json, sys
out = sys.argv.pop(1)
atexit.register(lambda: json.dump(sorted(sys.modules), open(out, "w")))
from amlctl.cli import main
main(sys.argv[1:])
"""
NEVER = ("azureml", "azure", "tensorflow", "numpy", "rich")


def modules_of(tmp_path: Path, *args: str) -> set[str]:
    """Top-level names of every module imported by `amlctl ARGS...`."""
    return {name.split(".")[0] for name in full_modules_of(tmp_path, *args)}


def full_modules_of(tmp_path: Path, *args: str, home: Path | None = None) -> set[str]:
    """Every module (dotted name) imported by `amlctl ARGS...`, state in `home` if given."""
    out = tmp_path / "modules.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMLCTL_")}
    if home is not None:
        env["AMLCTL_HOME"] = str(home)
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(out), *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stderr
    return set(json.loads(out.read_text()))


@pytest.mark.parametrize("args", [
    ("--help",),
    ("validate", "-f", str(MNIST)),
    ("render", "-f", str(MNIST)),
    ("validate", "-f", str(AZURE)),
    ("render", "-f", str(AZURE)),
    ("schema",),
], ids=["help", "validate-mnist", "render-mnist", "validate-azure", "render-azure", "schema"])
def test_manifest_commands_never_import_the_sdk(tmp_path: Path, args: tuple[str, ...]) -> None:
    imported = modules_of(tmp_path, *args)
    assert not imported & set(NEVER), sorted(imported & set(NEVER))


def test_the_v2_backend_is_imported_only_when_used(tmp_path: Path) -> None:
    """`backend: azure-v2` (or --backend azure-v2) costs nothing until a command talks to Azure:
    azure-ai-ml takes about 1.6 s to import."""
    v2 = tmp_path / "amlctl.yaml"
    v2.write_text(PLAIN.replace("name: plain\n", "name: plain\nbackend: azure-v2\n"))
    for args in (("validate",), ("render",), ("--backend", "azure-v2", "validate"),
                 ("--backend", "azure-v2", "--help")):
        imported = modules_of(tmp_path, *args)
        assert not imported & set(NEVER), (args, sorted(imported & set(NEVER)))
    # choosing the backend (no request yet) does not import the SDK either
    probe = ("import sys; from pathlib import Path; from amlctl.providers import get_provider; "
             "get_provider('azure-v2', {}, 's', Path('.')); "
             "print(sorted(m for m in sys.modules if m.startswith(('azure', 'azureml'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.strip() == "[]", done.stdout


def test_help_imports_no_manifest_machinery(tmp_path: Path) -> None:
    imported = modules_of(tmp_path, "--help")
    assert not imported & {"pydantic", "pydantic_core", "ruamel", "jinja2"}


def test_a_manifest_without_templates_does_not_load_jinja2(tmp_path: Path) -> None:
    (tmp_path / "amlctl.yaml").write_text(PLAIN)
    imported = modules_of(tmp_path, "validate")
    assert "ruamel" in imported and "pydantic" in imported
    assert "jinja2" not in imported


@pytest.mark.parametrize("manifest", [MNIST, AZURE], ids=["mnist", "azure"])
def test_plain_lookups_do_not_load_jinja2(tmp_path: Path, manifest: Path) -> None:
    # the examples only use {{ vars.x }}, env() and secret_env(): answered without jinja2
    assert "jinja2" not in modules_of(tmp_path, "validate", "-f", str(manifest))


def test_other_templates_load_jinja2(tmp_path: Path) -> None:
    (tmp_path / "amlctl.yaml").write_text(PLAIN.replace("name: plain\n",
                                                        "name: \"{{ 'plain' | upper }}\"\n"))
    assert "jinja2" in modules_of(tmp_path, "validate")


def test_the_shared_runs_package_imports_no_backend() -> None:
    """amlctl.runs holds what every backend shares; the local backend's run machinery lives
    in amlctl.providers.local.runs, so nothing in amlctl.runs may import a provider (that
    was a package cycle: runs -> providers.local -> runs)."""
    import ast

    offenders = []
    for path in sorted((ROOT / "amlctl" / "runs").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.name}: {n}" for n in names
                          if n.startswith("amlctl.providers")]
    assert offenders == []


def test_validate_reads_no_backend_code(tmp_path: Path) -> None:
    """The manifest's models need the backend names only, not the provider interface."""
    out = tmp_path / "modules.json"
    subprocess.run([sys.executable, "-c", PROBE, str(out), "validate", "-f", str(MNIST)],
                   cwd=tmp_path, capture_output=True, text=True, timeout=60, check=True)
    imported = set(json.loads(out.read_text()))
    assert "amlctl.manifest.models" in imported
    assert not {m for m in imported if m.startswith("amlctl.providers.")}, sorted(
        m for m in imported if m.startswith("amlctl.providers."))


def test_the_cli_never_loads_pydantics_plugin_finder(tmp_path: Path) -> None:
    """pydantic's plugin finder imports importlib.metadata (email, zipfile, csv...): a tenth
    of validate's time, for plugins amlctl never uses. The CLI answers it with "none"."""
    imported = full_modules_of(tmp_path, "validate", "-f", str(MNIST))
    assert "pydantic.main" in imported  # the manifest was validated with pydantic
    assert "importlib.metadata" not in imported
    assert "email" not in imported


def test_the_plugin_finder_stand_in_passes_other_names_to_pydantics_own() -> None:
    """Were a newer pydantic to ask its finder for a name the stand-in lacks, it gets the
    real one (read from pydantic's file), not an ImportError that would stop every command."""
    script = (
        "import sys\n"
        "from amlctl.cli import _no_pydantic_plugins\n"
        "_no_pydantic_plugins()\n"
        "import pydantic.plugin._loader as finder\n"
        "print(list(finder.get_plugins()), finder.PYDANTIC_ENTRY_POINT_GROUP)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=True)
    assert done.stdout.split() == ["[]", "pydantic"]


def test_a_no_op_plan_loads_only_what_it_uses(tmp_path: Path) -> None:
    """Every plan and apply pays its imports: a plan of an upload (no runs, no computes, text
    output) loads no run definitions, VM size catalogue, node pools or other renderers."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "one.txt").write_text("1\n")
    (tmp_path / "amlctl.yaml").write_text(
        PLAIN + "uploads:\n  data: {datastore: default, src_dir: data, target_path: data}\n")
    home = tmp_path / "home"
    subprocess.run([sys.executable, "-m", "amlctl", "apply", "--auto-approve"], cwd=tmp_path,
                   env={**os.environ, "AMLCTL_HOME": str(home)}, capture_output=True,
                   timeout=60, check=True)
    imported = full_modules_of(tmp_path, "plan", home=home)
    assert {"amlctl.engine.planner", "amlctl.render.human"} <= imported  # it did plan
    unused = {"amlctl.runs.definition", "amlctl.manifest.vmsizes", "amlctl.providers.local.pool",
              "amlctl.render.jsonplan", "amlctl.render.markdown", "amlctl.engine.planfile",
              "importlib.metadata"}
    assert not imported & unused, sorted(imported & unused)
    # a no-op apply takes the lock and reads no plan file
    imported = full_modules_of(tmp_path, "apply", "--auto-approve", home=home)
    assert {"amlctl.engine.lock", "amlctl.engine.operation"} <= imported  # it did apply
    assert not imported & unused, sorted(imported & unused)


def test_loading_a_manifest_reads_no_plugin_entry_points() -> None:
    """As a library (no CLI hook), the manifest's validators are still built with pydantic's
    plugin search off: it would read the entry points of every installed package."""
    probe = (
        "import sys\n"
        "import pydantic.plugin._loader as finder\n"
        "finder.entry_points = lambda **kw: sys.exit('entry points read: ' + repr(kw))\n"
        "from amlctl.manifest.loader import load_manifest\n"
        f"loaded = load_manifest({str(MNIST)!r}, allow_missing_secrets=True)\n"
        "print(loaded.manifest.name, loaded.manifest.workspace.model_dump()['name'])\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["mnist", "mnist-ws"]
