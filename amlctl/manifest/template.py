"""Jinja2 templating of manifest string values, in a sandbox.

Values are rendered one by one after YAML parsing, so an error keeps the value's line. A value
that is a single `{{ expression }}` evaluates to the expression's native type, so
`max_nodes: "{{ vars.nodes }}"` is the integer 2, not the string "2".
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from functools import cached_property
from typing import Any

_SINGLE_EXPRESSION = re.compile(r"^\s*\{\{(?P<expr>.*)\}\}\s*$", re.DOTALL)


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

    @cached_property
    def _env(self) -> Any:
        from jinja2 import StrictUndefined
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        env = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False)
        env.globals.update(env=self._env_function, secret_env=self._secret_env_function)
        env.globals["vars"] = self._vars
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
        value = self._environ.get(name)
        if value is None:
            if not self._allow_missing_secrets:
                raise TemplateError(f"secret environment variable {name} is not set")
            self.missing_secrets.append(name)
            return SensitiveStr("")
        return SensitiveStr(value)

    def render(self, text: str) -> Any:
        """Render one string value; a single expression keeps its native type."""
        from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError

        try:
            match = _SINGLE_EXPRESSION.match(text)
            if match and "{{" not in match.group("expr") and "}}" not in match.group("expr"):
                value = self._env.compile_expression(
                    match.group("expr").strip(), undefined_to_none=False
                )()
                return _strip_undefined(value)
            result = self._env.from_string(text).render()
            if _contains_secret(text):
                return SensitiveStr(result)
            return result
        except TemplateError:
            raise
        except SecurityError as err:
            raise TemplateError(f"template refused by the sandbox: {err}") from None
        except UndefinedError as err:
            raise TemplateError(f"undefined in template: {err.message}") from None
        except TemplateSyntaxError as err:
            raise TemplateError(f"template syntax error: {err.message}") from None
        except Exception as err:  # any other failure inside the user's expression
            raise TemplateError(f"template failed: {type(err).__name__}: {err}") from None


def _contains_secret(text: str) -> bool:
    return "secret_env" in text


def _strip_undefined(value: Any) -> Any:
    from jinja2 import Undefined

    if isinstance(value, Undefined):
        str(value)  # StrictUndefined raises UndefinedError with the name
    return value

