"""Templating on its own: plain lookups answered without jinja2 agree with jinja2 exactly."""

from __future__ import annotations

from typing import Any

import pytest

from amlctl.manifest.template import Renderer, SensitiveStr, TemplateError

VARS = {
    "nodes": 2,
    "ratio": 0.5,
    "gpu": True,
    "nothing": None,
    "name": "mnist",
    "items": "a key named like a dict method",
    "group": {"inner": {"leaf": 7}, "key": "hunter2-free"},
    "secrets": {"key": SensitiveStr("hunter2"), "plain": "x"},
    "list": [1, 2],
}
ENVIRON = {"SET": "from-env", "EMPTY": "", "KEY": "hunter2"}


def outcome(text: str) -> tuple[str, Any, type]:
    renderer = Renderer(VARS, environ=ENVIRON)
    try:
        value = renderer.render(text)
    except TemplateError as err:
        return ("error", str(err), TemplateError)
    if callable(value):  # `vars.items` is the dict method, bound to each renderer's own copy
        return ("callable", getattr(value, "__name__", ""), type(value))
    return ("value", value, type(value))


@pytest.mark.parametrize("expression", [
    "vars.nodes",
    "vars.ratio",
    "vars.gpu",
    "vars.nothing",
    "vars.name",
    "vars.group",
    "vars.group.inner.leaf",
    "vars.group.key",
    "vars.secrets.key",
    "vars.secrets.plain",
    "vars.secrets",
    "vars.list",
    "vars.items",
    "vars.missing",
    "vars.group.missing",
    "vars.name.upper",
    "env('SET')",
    "env(\"SET\")",
    "env('EMPTY')",
    "env('UNSET')",
    "env('UNSET', 'fallback')",
    "env('UNSET', '')",
    "env( 'SET' , \"fallback\" )",
    "secret_env('KEY')",
    "secret_env('UNSET')",
    "secret_env('KEY', 'default')",
])
@pytest.mark.parametrize("spacing", ["{{ %s }}", "{{%s}}", "  {{ %s }}\n"])
def test_plain_lookup_agrees_with_jinja2(expression: str, spacing: str) -> None:
    # Parentheses keep the meaning but are not a plain lookup: jinja2 evaluates that one.
    direct = outcome(spacing % expression)
    through_jinja2 = outcome(spacing % f"({expression})")
    assert direct == through_jinja2
    assert isinstance(direct[1], SensitiveStr) == isinstance(through_jinja2[1], SensitiveStr)


def test_missing_secret_is_recorded_when_allowed() -> None:
    renderer = Renderer({}, environ={}, allow_missing_secrets=True)
    value = renderer.render("{{ secret_env('UNSET') }}")
    assert isinstance(value, SensitiveStr) and value == ""
    assert renderer.missing_secrets == ["UNSET"]


def test_text_around_an_expression_makes_a_string() -> None:
    assert Renderer(VARS).render("{{ vars.nodes }} nodes") == "2 nodes"
    assert Renderer(VARS).render("{{ vars.nodes }}{{ vars.nodes }}") == "22"
