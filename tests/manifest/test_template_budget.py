"""The templates of one manifest share a budget: steps, text built, string size, wall clock.

Each hostile template fails as one located error, fast and in bounded memory; ordinary
templates are untouched by the budget.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amlctl.manifest import template
from amlctl.manifest.template import MAX_STEPS, Renderer, TemplateError
from tests.manifest.hostile import HOSTILE, STEPS

HEAD = """\
version: 1
name: demo
workspace:
  name: demo-ws
  subscription_id: "0"
  resource_group: rg
"""
SECONDS = 10.0  # a hang detector for a loaded machine; bench/template_budget.py measures


@pytest.mark.parametrize(("name", "text", "message"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_template_is_one_located_error(
    project: Path, amlctl, name: str, text: str, message: str
) -> None:
    (project / "amlctl.yaml").write_text(HEAD + f'  location: "{text}"\n')
    started = time.perf_counter()
    result = amlctl("validate")
    elapsed = time.perf_counter() - started
    assert result.code == 1
    lines = result.stderr.splitlines()
    assert lines[-1] == "1 error in the manifest", result.stderr
    assert lines[0].startswith("amlctl.yaml:7:3: workspace.location: "), lines[0]
    assert message in lines[0]
    assert elapsed < SECONDS


def test_hostile_templates_stay_in_bounded_memory(project: Path) -> None:
    # A process of its own, so the peak memory is the templates' and nothing else's.
    probe = (
        "import json, resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))  # a regression fails, "
        "not the machine\n"
        "from amlctl.manifest.template import Renderer, TemplateError\n"
        "from tests.manifest.hostile import HOSTILE\n"
        "failed = []\n"
        "for name, text, _ in HOSTILE:\n"
        "    try:\n"
        "        Renderer({}).render(text)\n"
        "    except TemplateError:\n"
        "        failed.append(name)\n"
        # VmHWM, not ru_maxrss: Linux keeps in ru_maxrss the size of the process that forked
        "peak = [line for line in open('/proc/self/status') if line.startswith('VmHWM')]\n"
        "print(json.dumps([failed, int(peak[0].split()[1])]))\n"
    )
    root = Path(__file__).resolve().parents[2]
    run = subprocess.run([sys.executable, "-c", probe], cwd=root, capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    failed, peak_kib = json.loads(run.stdout)
    assert failed == [name for name, _, _ in HOSTILE]
    assert peak_kib < 256 * 1024, f"peak memory {peak_kib} KiB"


def test_the_budget_is_shared_by_every_value_of_a_manifest(project: Path, amlctl) -> None:
    # Each value alone is fine; together they run past the manifest's steps.
    loop = "{% for i in range(20000) %}{% endfor %}"
    (project / "amlctl.yaml").write_text(
        HEAD.replace('subscription_id: "0"', f'subscription_id: "{loop}0"')
        .replace("resource_group: rg", f'resource_group: "{loop}rg"')
        + f'  location: "{loop}westeurope"\n'
        + "  tags:\n" + "".join(f'    t{i}: "{loop}x"\n' for i in range(3))
    )
    result = amlctl("validate")
    assert result.code == 1
    # the third value crosses the line; rendering stops there, so one error, not four
    assert result.stderr == (
        f"amlctl.yaml:7:3: workspace.location: {STEPS} (the limit for one manifest)\n"
        "1 error in the manifest\n"
    )


def test_the_wall_clock_is_a_budget_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(template, "MAX_SECONDS", 0.0)
    with pytest.raises(TemplateError, match="templates took more than 0 s in all"):
        Renderer({}).render("{% for i in range(10) %}{{ i }}{% endfor %}")


def test_ordinary_templates_are_not_limited() -> None:
    renderer = Renderer({"names": [f"n{i}" for i in range(1000)], "width": 12})
    assert renderer.render("{{ vars.names|join(',') }}").count(",") == 999
    assert renderer.render("{% for n in vars.names %}{{ loop.index }}{% endfor %}").endswith(
        "1000")
    assert renderer.render("{{ 'x'|center(vars.width) }}") == "     x      "
    assert renderer.render("{{ '%05d' % 42 }}") == "00042"
    assert renderer.render("{{ '{:>4}'.format(7) }}") == "   7"
    assert renderer.render("{{ 'ab' * 3 }}") == "ababab"
    assert renderer.render("{{ ('a-b')|replace('-', '_') }}") == "a_b"
    assert renderer.render("{{ [1, 2]|sum }}") == 3
    assert renderer.render("{{ 2 ** 10 }}") == 1024
    assert renderer.render("{% set ns = namespace(n=0) %}{% for i in range(5) %}"
                           "{% set ns.n = ns.n + i %}{% endfor %}{{ ns.n }}") == "10"
    assert renderer.budget.steps < MAX_STEPS


@pytest.mark.parametrize(("text", "value"), [
    ("{{ [1, 2]|tojson }}", "[1, 2]"),
    ("{{ 'rg'|safe }}", "rg"),
    ("{{ range(3) }}", [0, 1, 2]),
    ("{{ (1, 2) }}", [1, 2]),
    ("{{ ['a']|map('upper') }}", ["A"]),
    ("{{ dict(a=1) }}", {"a": 1}),
])
def test_values_jinja2_makes_become_plain_data(text: str, value: object) -> None:
    rendered = Renderer({}).render(text)
    assert rendered == value
    assert type(rendered) is type(value)


@pytest.mark.parametrize(("text", "message"), [
    ("{{ namespace(a=1) }}", "a namespace() cannot be a value (it is for loops)"),
    ("{{ env }}", "the template gives a method; a value must be text, a number"),
    ("{{ 'x'.encode() }}", "the template gives a bytes; a value must be text"),
])
def test_values_yaml_cannot_hold_are_refused(text: str, message: str) -> None:
    with pytest.raises(TemplateError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Renderer({}).render(text)


def test_render_prints_what_jinja2_makes(project: Path, amlctl) -> None:
    # namespace(), |tojson and |safe made `render` crash in the YAML writer
    (project / "amlctl.yaml").write_text(
        "version: 1\nname: demo\nvars:\n  list: \"{{ [1, 2]|tojson }}\"\n"
        "workspace:\n  name: demo-ws\n  subscription_id: \"{{ '0'|safe }}\"\n"
        "  resource_group: \"{% set ns = namespace(v='rg') %}{{ ns.v }}\"\n"
        "  location: westeurope\n"
    )
    result = amlctl("render")
    assert result.code == 0, result.stderr
    assert "list: '[1, 2]'\n" in result.stdout
    assert "subscription_id: '0'\n" in result.stdout
    assert "resource_group: rg\n" in result.stdout
    (project / "amlctl.yaml").write_text(
        (project / "amlctl.yaml").read_text().replace("[1, 2]|tojson", "namespace(a=1)")
    )
    result = amlctl("render")
    assert result.code == 1
    assert result.stderr.startswith("amlctl.yaml:4:3: vars.list: a namespace() cannot be a "
                                    "value"), result.stderr


def test_a_value_nested_too_deep_is_refused() -> None:
    with pytest.raises(TemplateError, match="nested deeper than 64 levels"):
        Renderer({}).render("{{ " + "[" * 70 + "]" * 70 + " }}")
    assert Renderer({}).render("{{ " + "[" * 10 + "]" * 10 + " }}") == [[[[[[[[[[]]]]]]]]]]
