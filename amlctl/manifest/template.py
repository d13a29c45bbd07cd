"""Jinja2 templating of manifest string values, in a sandbox.

Values are rendered one by one after YAML parsing, so an error keeps the value's line. A value
that is a single `{{ expression }}` evaluates to the expression's native type, so
`max_nodes: "{{ vars.nodes }}"` is the integer 2, not the string "2".
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)

# Templates that are a plain lookup, answered without jinja2 (see Renderer._plain_lookup).
_NOT_PLAIN = object()
_PLAIN_VAR = re.compile(r"^\s*\{\{\s*(?P<names>vars(?:\.[A-Za-z_][A-Za-z0-9_]*)+)\s*\}\}\s*$")
_PLAIN_CALL = re.compile(
    r"""^\s*\{\{\s*(?P<function>env|secret_env)\(\s*(?P<q>['"])(?P<name>[^'"\\]*)(?P=q)\s*"""
    r"""(?:,\s*(?P<q2>['"])(?P<default>[^'"\\]*)(?P=q2)\s*)?\)\s*\}\}\s*$"""
)

TEMPLATE_NAMES = ["vars", "env", "secret_env", "range", "dict", "namespace"]
MAX_RANGE_ITEMS = 100_000  # loop iterations one value may use in all
MAX_TEXT = 1024 * 1024  # longest string or list a `*` may build (the manifest's own limit)
MAX_INT_BITS = 4096  # largest number a `**` may build


class SensitiveStr(str):
    """A string that came from `secret_env()`: redacted wherever amlctl prints or stores."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'(sensitive)'"


class TemplateError(Exception):
    """A template could not be rendered; the loader adds the file position."""


def has_template(text: str) -> bool:
    """True if `text` contains jinja2 syntax (cheap check that avoids importing jinja2)."""
    return "{{" in text or "{%" in text


class Renderer:
    """Renders template strings with `vars`, `env()` and `secret_env()` in a sandbox.

    `missing_secrets` collects the names of `secret_env()` variables that are not set when
    `allow_missing_secrets` is on (validate and render need no secret to check a manifest).
    """

    def __init__(
        self,
        variables: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
        allow_missing_secrets: bool = False,
    ) -> None:
        self._vars = dict(variables)
        self._environ = os.environ if environ is None else environ
        self._allow_missing_secrets = allow_missing_secrets
        self.missing_secrets: list[str] = []
        self._secret_touched = False  # set when the value being rendered read a secret
        self._range_left = MAX_RANGE_ITEMS

    @cached_property
    def _env(self) -> Any:
        env = _sandbox(self._touch_secret)
        env.globals.update(
            env=self._env_function,
            secret_env=self._secret_env_function,
            range=self._range_function,
            vars=self._vars,
        )
        return env

    def set_vars(self, variables: Mapping[str, Any]) -> None:
        """Replace the variables templates see (after the manifest's own vars are rendered)."""
        self._vars = dict(variables)
        if "_env" in self.__dict__:
            self._env.globals["vars"] = self._vars

    def _env_function(self, name: str, default: Any = None) -> Any:
        value = self._environ.get(name)
        if value is None:
            if default is None:
                raise TemplateError(f"environment variable {name} is not set and has no default")
            return default
        return value

    def _secret_env_function(self, name: str) -> SensitiveStr:
        self._secret_touched = True
        value = self._environ.get(name)
        if value is None:
            if not self._allow_missing_secrets:
                raise TemplateError(f"secret environment variable {name} is not set")
            self.missing_secrets.append(name)
            return SensitiveStr("")
        return SensitiveStr(value)

    def _touch_secret(self) -> None:
        self._secret_touched = True

    def _range_function(self, *args: int) -> range:
        # One budget per value, so nested loops cannot multiply into hours of work.
        items = range(*args)
        self._range_left -= len(items)
        if self._range_left < 0:
            raise TemplateError(f"loops in one value may not run more than {MAX_RANGE_ITEMS} "
                                "times in all")
        return items

    def render(self, text: str) -> Any:
        """Render one string value; a single expression keeps its native type.

        A result that read a secret (through `secret_env()` or a variable holding one) is a
        SensitiveStr, whatever filters it went through, so it can be neither printed nor
        smuggled into a field that is not secret.
        """
        self._secret_touched = False
        self._range_left = MAX_RANGE_ITEMS
        value = self._plain_lookup(text)
        if value is _NOT_PLAIN:
            value = self._render_jinja(text)
        if self._secret_touched or _holds_secret(value):
            return value if isinstance(value, SensitiveStr) else SensitiveStr(value)
        return value

    def _plain_lookup(self, text: str) -> Any:
        """The value of `{{ vars.a.b }}`, `{{ env('N', 'default') }}` or `{{ secret_env('N') }}`
        without jinja2 (importing it is a third of a validate's start-up); _NOT_PLAIN for any
        other template, and for a lookup that fails, so results and messages stay jinja2's."""
        match = _PLAIN_VAR.match(text)
        if match:
            node: Any = self._vars
            for name in match.group("names").split(".")[1:]:
                # jinja2 prefers attributes: `vars.items` is the dict method, not a key
                if not isinstance(node, dict) or name not in node or hasattr(dict, name):
                    return _NOT_PLAIN
                node = node[name]
                if _holds_secret(node):
                    self._secret_touched = True  # as the sandbox's getattr would report
            return node
        match = _PLAIN_CALL.match(text)
        if match is None:
            return _NOT_PLAIN
        name, default = match.group("name"), match.group("default")
        if match.group("function") == "secret_env":
            return _NOT_PLAIN if default is not None else self._secret_env_function(name)
        return self._env_function(name, default)

    def _render_jinja(self, text: str) -> Any:
        from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError

        try:
            match = _SINGLE_EXPRESSION.match(text)
            if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
                value = self._env.compile_expression(
                    match.group("expr").strip(), undefined_to_none=False
                )()
                value = _strip_undefined(value)
            else:
                value = self._env.from_string(text).render()
        except TemplateError:
            raise
        except SecurityError as err:
            raise TemplateError(f"template refused by the sandbox: {err}") from None
        except UndefinedError as err:
            raise TemplateError(_undefined_message(err.message or "", self._vars)) from None
        except TemplateSyntaxError as err:
            raise TemplateError(f"template syntax error: {err.message}") from None
        except Exception as err:  # any other failure inside the user's expression
            raise TemplateError(f"template failed: {type(err).__name__}: {err}") from None
        return value


def _holds_secret(value: Any) -> bool:
    if isinstance(value, SensitiveStr):
        return True
    if isinstance(value, dict):
        return any(_holds_secret(v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(_holds_secret(v) for v in value)
    return False


def _undefined_message(message: str, variables: Mapping[str, Any]) -> str:
    """jinja2's "'x' is undefined", with what templates can use and the closest name."""
    import difflib

    unknown_name = re.fullmatch(r"'(\w+)' is undefined", message)
    if unknown_name:
        name = unknown_name.group(1)
        close = difflib.get_close_matches(name, TEMPLATE_NAMES, n=1)
        hint = f"did you mean '{close[0]}'? " if close else ""
        return (f"unknown name '{name}' in template ({hint}templates know vars.NAME, "
                "env(name, default) and secret_env(name))")
    missing_key = re.fullmatch(r"'dict object' has no attribute '(\w+)'", message)
    if missing_key:
        close = difflib.get_close_matches(missing_key.group(1), list(variables), n=1)
        if close:
            return f"undefined in template: {message} (did you mean vars.{close[0]}?)"
    return f"undefined in template: {message}"


def _strip_undefined(value: Any) -> Any:
    from jinja2 import Undefined

    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError with the name
    return value


def _sandbox(on_secret: Callable[[], None]) -> Any:
    """An immutable jinja2 sandbox that reports reads of secrets and refuses huge values."""
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"*", "**"})

        def getattr(self, obj: Any, attribute: str) -> Any:
            value = super().getattr(obj, attribute)
            if _holds_secret(value):
                on_secret()
            return value

        def getitem(self, obj: Any, argument: Any) -> Any:
            value = super().getitem(obj, argument)
            if _holds_secret(value):
                on_secret()
            return value

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_size(operator, left, right)
            return super().call_binop(context, operator, left, right)

    env = Sandbox(undefined=StrictUndefined, autoescape=False)
    # Only what a manifest needs: lipsum, cycler and joiner are attack surface, not features.
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    return env


def _check_size(operator: str, left: Any, right: Any) -> None:
    """Refuse `*` and `**` whose result would be huge (`'x' * 10**9`, `9 ** 9 ** 9`)."""
    if operator == "**" and isinstance(left, int) and isinstance(right, int):
        if abs(left) > 1 and right > 0 and abs(left).bit_length() * right > MAX_INT_BITS:
            raise TemplateError(f"{left} ** {right} is too large a number")
    elif operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, str | list | tuple) and isinstance(count, int) and (
                len(seq) * count > MAX_TEXT
            ):
                raise TemplateError(f"a value of {len(seq) * count} items is too large")
