"""Jinja2 templating of manifest string values, in a sandbox with a budget.

Values are rendered one by one after YAML parsing, so an error keeps the value's line. A value
that is a single `{{ expression }}` evaluates to the expression's native type, so
`max_nodes: "{{ vars.nodes }}"` is the integer 2, not the string "2".

A manifest is untrusted input (validate runs on pull requests), so rendering has a budget for
the whole manifest (see `Budget`) and secrets are opaque: a template never sees a secret's
value, only a token standing for it (see `SecretText`), which it may insert whole but not
inspect. The real value is put back after rendering, into a `SensitiveStr`.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property, wraps
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

# The rendering budget of one manifest (all its values together, var files included).
MAX_TEXT = 1024 * 1024  # longest string, list or rendered value (the manifest's own limit)
MAX_BUILT = 16 * 1024 * 1024  # all text the templates of one manifest may build in all
MAX_STEPS = 50_000  # loop iterations and calls of all templates of one manifest
MAX_SECONDS = 2.0  # wall-clock time of all templates of one manifest
MAX_TEMPLATE = 64 * 1024  # longest template source (compiling is not interruptible)
MAX_INT_BITS = 4096  # largest number an operator may build
MAX_DEPTH = 64  # deepest list or mapping a template may give (as the manifest's own limit)
MAX_ARGUMENT = MAX_TEXT  # largest width, count or indent a filter or method may be given


class SensitiveStr(str):
    """A string that came from `secret_env()`: redacted wherever amlctl prints or stores."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "'(sensitive)'"


class TemplateError(Exception):
    """A template could not be rendered; the loader adds the file position."""


class BudgetError(TemplateError):
    """The manifest's templates used up a budget; the loader stops rendering at the first."""


class SecretUseError(TemplateError):
    """A template tried to look into a secret instead of inserting it whole."""


OPAQUE = ("secret values are opaque to templates: they can be inserted whole (alone, in "
          "text, joined) but not {}")


def has_template(text: str) -> bool:
    """True if `text` contains jinja2 syntax (cheap check that avoids importing jinja2)."""
    return "{{" in text or "{%" in text


class SecretText(str):
    """Text holding one or more secret tokens, as templates see it.

    Every operation that would look at the characters (length, truthiness, iteration,
    indexing, comparison, `in`, formatting with a spec, use as a format string) raises
    SecretUseError; the sandbox refuses its methods and the filters that transform text.
    Operations that only move it around whole (concatenation, `%s`, join, tojson) keep the
    tokens intact, and their results become SecretText again.
    """

    __slots__ = ()
    __hash__ = str.__hash__

    def _refuse(self, what: str) -> Any:
        raise SecretUseError(OPAQUE.format(what))

    def __len__(self) -> int:
        return self._refuse("measured")

    def __iter__(self) -> Iterator[str]:
        return self._refuse("iterated over")

    def __getitem__(self, key: Any) -> str:
        return self._refuse("indexed or sliced")

    def __contains__(self, key: object) -> bool:
        return self._refuse("searched")

    def __eq__(self, other: object) -> bool:
        return self._refuse("compared")

    def __ne__(self, other: object) -> bool:
        return self._refuse("compared")

    def __lt__(self, other: str) -> bool:
        return self._refuse("compared")

    def __le__(self, other: str) -> bool:
        return self._refuse("compared")

    def __gt__(self, other: str) -> bool:
        return self._refuse("compared")

    def __ge__(self, other: str) -> bool:
        return self._refuse("compared")

    def __mod__(self, other: Any) -> str:
        return self._refuse("used as a format string")

    def __format__(self, spec: str) -> str:
        if spec:
            return self._refuse(f"formatted with a spec ({spec!r})")
        return self

    def __str__(self) -> str:
        return self


class Budget:
    """What the templates of one manifest may still use; raises BudgetError when spent."""

    def __init__(self) -> None:
        self.steps = 0
        self.built = 0
        self.seconds = 0.0
        self._deadline: float | None = None
        self._started = 0.0

    def start(self) -> None:
        """Start the clock for one value."""
        self._started = time.monotonic()
        self._deadline = self._started + MAX_SECONDS - self.seconds
        if self.seconds >= MAX_SECONDS:
            self._over_time()

    def stop(self) -> None:
        """Stop the clock, keeping the time used."""
        if self._deadline is not None:
            self.seconds += time.monotonic() - self._started
            self._deadline = None

    def tick(self) -> None:
        """Check the clock (called from every hook of the sandbox)."""
        if self._deadline is not None and time.monotonic() > self._deadline:
            self._over_time()

    def _over_time(self) -> None:
        raise BudgetError(f"templates took more than {MAX_SECONDS:g} s in all (the limit "
                          "for one manifest)")

    def step(self, count: int = 1) -> None:
        """Count loop iterations and calls."""
        self.steps += count
        if self.steps > MAX_STEPS:
            raise BudgetError(f"templates may run at most {MAX_STEPS} loop iterations and "
                              "calls in all (the limit for one manifest)")
        self.tick()

    def check_size(self, size: int, what: str = "a value") -> None:
        """Refuse one string or list longer than MAX_TEXT before or after building it."""
        if size > MAX_TEXT:
            raise TemplateError(f"{what} of {size} characters or items is too large (the "
                                f"limit is {MAX_TEXT})")

    def build(self, size: int, what: str = "a value") -> None:
        """Count text (or list items) a template built; check both limits."""
        self.check_size(size, what)
        self.built += size
        if self.built > MAX_BUILT:
            raise BudgetError(f"templates may build at most {MAX_BUILT} characters in all "
                              "(the limit for one manifest)")
        self.tick()


def size_of(value: Any, limit: int = MAX_TEXT) -> int:
    """Characters or items in `value`, counted through lists and mappings; stops past `limit`.

    Iterative, so a deeply nested value cannot exhaust the stack.
    """
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += str.__len__(item) if isinstance(item, str) else len(item)
        elif isinstance(item, dict):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            total += len(item)
            stack.extend(item)
        else:
            total += 8  # a number, None, a function: short when printed
        if total > limit:
            return total
    return total


class Renderer:
    """Renders template strings with `vars`, `env()` and `secret_env()` in a sandbox.

    One Renderer renders one manifest (and its var files): the budget is shared by all of its
    values. `missing_secrets` collects the names of `secret_env()` variables that are not set
    when `allow_missing_secrets` is on (validate and render need no secret to check a
    manifest).
    """

    def __init__(
        self,
        variables: Mapping[str, Any],
        environ: Mapping[str, str] | None = None,
        allow_missing_secrets: bool = False,
    ) -> None:
        self._environ = os.environ if environ is None else environ
        self._allow_missing_secrets = allow_missing_secrets
        self.missing_secrets: list[str] = []
        self.budget = Budget()
        self._nonce = os.urandom(8).hex()  # unguessable: user text never holds a token
        self._token_re = re.compile(f"SECRET{self._nonce}N([0-9]+)X")
        self._secrets: list[str] = []
        self._token_of: dict[str, int] = {}
        self._compiled: dict[str, Any] = {}
        self._vars: dict[str, Any] = {}
        self._template_vars: dict[str, Any] = {}
        self.set_vars(variables)

    @cached_property
    def _env(self) -> Any:
        env = _sandbox(self.budget, self._nonce)
        env.globals.update(
            env=self._env_function,
            secret_env=self._secret_env_function,
            range=self._range_function,
            vars=self._template_vars,
        )
        return env

    def set_vars(self, variables: Mapping[str, Any]) -> None:
        """Replace the variables templates see (after the manifest's own vars are rendered)."""
        self._vars = dict(variables)
        self._template_vars = self._conceal(self._vars)
        if "_env" in self.__dict__:
            self._env.globals["vars"] = self._template_vars

    # secrets as tokens ---------------------------------------------------------------------

    def _token(self, value: str) -> SecretText:
        index = self._token_of.get(value)
        if index is None:
            index = self._token_of[value] = len(self._secrets)
            self._secrets.append(str.__str__(value))
        return SecretText(f"SECRET{self._nonce}N{index}X")

    def _conceal(self, value: Any) -> Any:
        """A copy of `value` where every SensitiveStr is a token."""
        if isinstance(value, SensitiveStr):
            return self._token(value)
        if isinstance(value, dict):
            return {k: self._conceal(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._conceal(v) for v in value]
        return value

    def _reveal(self, value: Any, depth: int = 0) -> Any:
        """The rendered value as plain data, each token replaced by its secret.

        A string that held a token becomes a SensitiveStr. Types YAML cannot hold (namespace,
        functions, undefined) are refused here, so `render` can always print the result.
        """
        if isinstance(value, bool | int | float) or value is None:
            return value
        if isinstance(value, str):
            text = str.__str__(value)  # plain str, whatever the subclass (Markup, SecretText)
            if self._nonce not in text:
                return value if type(value) is str or isinstance(value, SensitiveStr) \
                    else text
            revealed = self._token_re.sub(lambda m: self._secrets[int(m.group(1))], text)
            if self._nonce in revealed:
                raise SecretUseError(OPAQUE.format("changed"))
            return SensitiveStr(revealed)
        if depth > MAX_DEPTH:
            raise TemplateError(f"the template gives a value nested deeper than {MAX_DEPTH} "
                                "levels")
        if isinstance(value, dict):
            if any(_has_token(k, self._nonce) for k in value):
                raise SecretUseError(OPAQUE.format("used as a key (keys are printed)"))
            return {self._reveal(k): self._reveal(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple | range):
            return [self._reveal(v, depth + 1) for v in value]
        # only jinja2 makes the other types: it is loaded already
        from jinja2.runtime import Undefined
        from jinja2.utils import Namespace
        from markupsafe import Markup

        if isinstance(value, Undefined):
            str(value)  # StrictUndefined raises UndefinedError with the name
        if isinstance(value, Iterator):  # map(), select(): bounded by what they read
            return [self._reveal(v, depth + 1) for v in value]
        if isinstance(value, Namespace):
            raise TemplateError("a namespace() cannot be a value (it is for loops); make a "
                                "mapping with dict(...) or {...}")
        if isinstance(value, Markup):
            return str(value)
        raise TemplateError(f"the template gives a {type(value).__name__}; a value must be "
                            "text, a number, a boolean, a list or a mapping")

    def scrub(self, message: str) -> str:
        """`message` with every secret token shown as (sensitive)."""
        return self._token_re.sub("(sensitive)", message).replace(self._nonce, "")

    # template functions --------------------------------------------------------------------

    def _env_function(self, name: str, default: Any = None) -> Any:
        if _has_token(name, self._nonce) or _has_token(default, self._nonce):
            raise SecretUseError("env() takes the name of a variable, not a secret")
        value = self._environ.get(name)
        if value is None:
            if default is None:
                raise TemplateError(f"environment variable {name} is not set and has no default")
            return default
        return value

    def _secret_env_function(self, name: str) -> SecretText | SensitiveStr:
        if _has_token(name, self._nonce):
            raise SecretUseError("secret_env() takes the name of a variable, not a secret")
        value = self._environ.get(name)
        if value is None:
            if not self._allow_missing_secrets:
                raise TemplateError(f"secret environment variable {name} is not set")
            self.missing_secrets.append(name)
            value = ""
        return self._token(value)

    def _range_function(self, *args: int) -> range:
        items = range(*args)
        # lazy, but `|list` or a loop would make it real: no longer than the steps left
        if len(items) > MAX_STEPS:
            raise TemplateError(f"range() of {len(items)} items: templates may run at most "
                              f"{MAX_STEPS} loop iterations and calls in all")
        return items

    # rendering -----------------------------------------------------------------------------

    def render(self, text: str) -> Any:
        """Render one string value; a single expression keeps its native type.

        A result that holds a secret is a SensitiveStr (or a list/mapping holding some), so it
        can be neither printed nor smuggled into a field that is not secret.
        """
        value = self._plain_lookup(text)
        if value is _NOT_PLAIN:
            if len(text) > MAX_TEMPLATE:
                raise TemplateError(f"a template of {len(text)} characters is too long (the "
                                  f"limit is {MAX_TEMPLATE})")
            env = self._env  # imports jinja2 once; not part of the budget
            self.budget.start()
            try:
                value = self._render_jinja(env, text)
            finally:
                self.budget.stop()
        elif isinstance(value, SecretText):
            value = self._reveal(value)
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
            return node
        match = _PLAIN_CALL.match(text)
        if match is None:
            return _NOT_PLAIN
        name, default = match.group("name"), match.group("default")
        if match.group("function") == "secret_env":
            return _NOT_PLAIN if default is not None else self._secret_env_function(name)
        return self._env_function(name, default)

    def _render_jinja(self, env: Any, text: str) -> Any:
        from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError

        try:
            match = _SINGLE_EXPRESSION.match(text)
            single = match and "{{" not in match.group("expr") and "}}" not in match.group("expr")
            compiled = self._compiled.get(text)
            if compiled is None:
                if single:
                    compiled = env.compile_expression(
                        match.group("expr").strip(), undefined_to_none=False
                    )
                else:
                    compiled = env.from_string(text)
                self._compiled[text] = compiled
            value = self._reveal(compiled() if single else compiled.render())
        except TemplateError:
            raise
        except SecurityError as err:
            raise TemplateError(f"template refused by the sandbox: {self.scrub(str(err))}"
                                ) from None
        except UndefinedError as err:
            raise TemplateError(
                self.scrub(_undefined_message(err.message or "", self._vars))
            ) from None
        except TemplateSyntaxError as err:
            raise TemplateError(f"template syntax error: {err.message}") from None
        except MemoryError:
            raise BudgetError("a template ran out of memory") from None
        except RecursionError:
            raise TemplateError("template failed: calls or values nest too deeply") from None
        except Exception as err:  # any other failure inside the user's expression
            raise TemplateError(
                f"template failed: {type(err).__name__}: {self.scrub(str(err))}"
            ) from None
        return value


def _has_token(value: Any, nonce: str) -> bool:
    return isinstance(value, str) and nonce in str.__str__(value)


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


# --- the sandbox -------------------------------------------------------------------------------

# Filters that take a secret whole: their result is the token itself.
_WHOLE_FILTERS = frozenset({"string", "default", "d", "safe"})
# Filters that move the items of a list or mapping around without reading their text (items
# passed on to other filters, tests or attribute lookups are checked there). Encoders (tojson,
# urlencode, escape, pprint) are not among them: they cannot encode what they cannot see.
_ITEM_FILTERS = frozenset({
    "attr", "batch", "count", "first", "items", "join", "last", "length", "list", "map",
    "random", "reject", "rejectattr", "reverse", "select", "selectattr", "slice",
    "default", "d",
})
# Tests that do not read a secret's text.
_WHOLE_TESTS = frozenset({"defined", "undefined", "none", "string", "sameas", "mapping",
                          "callable", "filter", "test", "boolean", "false", "true", "number",
                          "integer", "float"})

_PERCENT_SPEC = re.compile(
    r"%(?:\((?P<key>[^)]*)\))?[#0\- +]*(?P<width>\*|\d+)?(?:\.(?P<precision>\*|\d+))?"
    r"[hlL]?(?P<kind>[diouxXeEfFgGcrsa%])"
)


def _check_percent(budget: Budget, fmt: str, args: Any, nonce: str) -> None:
    """Refuse a `%` format whose widths would build a huge string (`'%01500000000d' % 1`),
    or that would cut a secret (`'%.3s'`)."""
    values = list(args) if isinstance(args, tuple) else [args]
    mapping = isinstance(args, dict) and "%(" in str.__str__(fmt)
    inserted = list(args.values()) if mapping else values
    secret_args = any(_contains_token(v, nonce) for v in inserted)
    if any(not isinstance(v, str) and _contains_token(v, nonce) for v in inserted):
        raise SecretUseError(OPAQUE.format("printed inside a list or mapping (print or join "
                                           "the items instead)"))
    total = 0
    for match in _PERCENT_SPEC.finditer(str.__str__(fmt)):
        for part in ("width", "precision"):
            text = match.group(part)
            if text is None:
                continue
            if text == "*":
                number = values.pop(0) if values and isinstance(values[0], int) else 0
            else:
                number = int(text) if len(text) < 12 else MAX_ARGUMENT + 1
            if part == "precision" and secret_args and match.group("kind") in "rsa":
                raise SecretUseError(OPAQUE.format("cut with a precision ('%.Ns')"))
            total += abs(number)
        if secret_args and match.group("kind") in "ra":
            raise SecretUseError(OPAQUE.format(f"converted with %{match.group('kind')}"))
        if match.group("width") != "*" and values and match.group("key") is None \
                and match.group("kind") != "%":
            values.pop(0)
    budget.check_size(total, "a format's widths")


def _contains_token(value: Any, nonce: str) -> bool:
    """True if `value` is or holds (in a list or mapping) a secret token."""
    stack = [value]
    seen = 0
    while stack and seen < MAX_TEXT:
        item = stack.pop()
        seen += 1
        if isinstance(item, str):
            if nonce in str.__str__(item):
                return True
        elif isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple):
            stack.extend(item)
    return False


def _int_arg(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str,
             default: Any = None) -> Any:
    if len(args) > index:
        return args[index]
    return kwargs.get(name, default)


def _text_len(value: Any) -> int:
    return str.__len__(value) if isinstance(value, str) else len(value)


def _precheck_filter(budget: Budget, name: str, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any], nonce: str) -> None:
    """Refuse a filter call whose result would be huge, before it is built."""
    value = args[0] if args else None
    text = value if isinstance(value, str) else None
    if name == "center" and text is not None:
        width = _int_arg(args, kwargs, 1, "width", 80)
        if isinstance(width, int):
            budget.check_size(max(width, _text_len(text)), "a centred string")
    elif name == "indent" and text is not None:
        width = _int_arg(args, kwargs, 1, "width", 4)
        pad = _text_len(width) if isinstance(width, str) else width if isinstance(
            width, int) else 0
        lines = str.count(text, "\n") + 1
        budget.check_size(_text_len(text) + lines * max(pad, 0), "an indented string")
    elif name == "wordwrap" and text is not None:
        wrap = _int_arg(args, kwargs, 3, "wrapstring") or "\n"
        if isinstance(wrap, str) and _text_len(wrap) > 1:
            budget.check_size(_text_len(text) * (1 + _text_len(wrap)), "a wrapped string")
    elif name == "replace" and text is not None:
        old, new = _int_arg(args, kwargs, 1, "old"), _int_arg(args, kwargs, 2, "new")
        count = _int_arg(args, kwargs, 3, "count")
        _check_replace(budget, text, old, new, count)
    elif name == "join":
        delimiter = _int_arg(args, kwargs, 1, "d", "")
        items = list(value) if isinstance(value, list | tuple | dict) else []
        size = size_of(items) + len(items) * (
            _text_len(delimiter) if isinstance(delimiter, str) else 0)
        budget.check_size(size, "a joined string")
    elif name == "format" and text is not None:
        if isinstance(value, SecretText):
            raise SecretUseError(OPAQUE.format("used as a format string"))
        _check_percent(budget, text, kwargs or tuple(args[1:]), nonce)
    elif name in ("batch", "slice"):
        count = _int_arg(args, kwargs, 1, "linecount" if name == "batch" else "slices")
        if isinstance(count, int):
            budget.check_size(count, f"{name}()")
    elif name == "tojson":
        indent = _int_arg(args, kwargs, 1, "indent")
        pad = indent if isinstance(indent, int) else _text_len(indent) if isinstance(
            indent, str) else 0
        if pad:
            # each item on its own line, indented once per level it is nested in
            budget.check_size(size_of(value) * (2 + pad * 64), "an indented JSON text")
    elif name == "sum":
        start = _int_arg(args, kwargs, 2, "start", 0)
        if not isinstance(start, int | float):
            raise TemplateError("sum() adds numbers only (start must be a number)")


def _check_replace(budget: Budget, text: str, old: Any, new: Any, count: Any) -> None:
    if not (isinstance(old, str) and isinstance(new, str)):
        return
    grow = _text_len(new) - _text_len(old)
    if grow <= 0:
        return
    hits = str.count(text, old) if _text_len(old) else _text_len(text) + 1
    if isinstance(count, int) and count >= 0:
        hits = min(hits, count)
    budget.check_size(_text_len(text) + hits * grow, "a replaced string")


def _precheck_method(budget: Budget, method: Any, args: tuple[Any, ...],
                     kwargs: Mapping[str, Any]) -> None:
    """Refuse a str/bytes/int method call whose result would be huge, before it runs."""
    owner = getattr(method, "__self__", None)
    name = getattr(method, "__name__", "")
    if isinstance(owner, str | bytes):
        length = _text_len(owner)
        if name in ("center", "ljust", "rjust", "zfill"):
            width = _int_arg(args, kwargs, 0, "width")
            if isinstance(width, int):
                budget.check_size(width, f"{name}()")
        elif name == "expandtabs":
            size = _int_arg(args, kwargs, 0, "tabsize", 8)
            tabs = owner.count("\t" if isinstance(owner, str) else b"\t")
            if isinstance(size, int):
                budget.check_size(length + tabs * max(size, 0), "expandtabs()")
        elif name == "replace" and isinstance(owner, str):
            _check_replace(budget, owner, _int_arg(args, kwargs, 0, "old"),
                           _int_arg(args, kwargs, 1, "new"), _int_arg(args, kwargs, 2, "count"))
        elif name == "replace":
            old, new = _int_arg(args, kwargs, 0, "old"), _int_arg(args, kwargs, 1, "new")
            if isinstance(old, bytes) and isinstance(new, bytes) and len(new) > len(old):
                hits = owner.count(old) if old else length + 1
                budget.check_size(length + hits * (len(new) - len(old)), "replace()")
        elif name == "join":
            items = args[0] if args else ()
            items = list(items) if isinstance(items, list | tuple | dict) else []
            budget.check_size(size_of(items) + len(items) * length, "join()")
        elif name == "translate":
            table = args[0] if args else None
            if isinstance(table, dict) and table:
                longest = max(size_of(v) for v in table.values())
                budget.check_size(length * max(longest, 1), "translate()")
    elif isinstance(owner, int) and name == "to_bytes":
        length = _int_arg(args, kwargs, 0, "length", 1)
        if isinstance(length, int):
            budget.check_size(length, "to_bytes()")


def _check_binop(budget: Budget, operator: str, left: Any, right: Any, nonce: str) -> None:
    """Refuse an operator whose result would be huge (`'x' * 10**9`, `9 ** 9 ** 9`)."""
    if operator == "**" and isinstance(left, int) and isinstance(right, int):
        if abs(left) > 1 and right > 0 and abs(left).bit_length() * right > MAX_INT_BITS:
            raise TemplateError(f"{left} ** {right} is too large a number")
    elif operator == "*":
        for seq, count in ((left, right), (right, left)):
            if isinstance(seq, str | bytes | list | tuple) and isinstance(count, int):
                budget.check_size(size_of(seq) * count, "a repeated value")
        if isinstance(left, int) and isinstance(right, int) and \
                left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateError(f"a product of more than {MAX_INT_BITS} bits is too large a "
                                "number")
    elif operator == "%" and isinstance(left, str):
        _check_percent(budget, left, right, nonce)
    elif operator == "+":
        budget.check_size(size_of(left) + size_of(right), "a sum")


def _mark(value: Any, nonce: str) -> Any:
    """A built string that holds a token becomes SecretText, so it stays opaque."""
    if isinstance(value, str) and not isinstance(value, SecretText) and \
            nonce in str.__str__(value):
        return SecretText(str.__str__(value))
    return value


def _sandbox(budget: Budget, nonce: str) -> Any:
    """An immutable jinja2 sandbox that counts every loop, call and built string in `budget`
    and keeps secret tokens opaque."""
    from jinja2 import StrictUndefined, nodes
    from jinja2.compiler import CodeGenerator
    from jinja2.runtime import Undefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
    from jinja2.utils import _PassArg

    class BudgetCodeGenerator(CodeGenerator):
        """Routes every loop and every `~` through the environment, where they are counted."""

        def visit_For(self, node: nodes.For, frame: Any) -> None:
            if node.recursive:
                self.fail("recursive loops are not allowed in a manifest", node.lineno)
            counted = nodes.Call(nodes.EnvironmentAttribute("counted"), [node.iter], [],
                                 None, None, lineno=node.lineno)
            node = nodes.For(node.target, counted, node.body, node.else_, node.test,
                             node.recursive, lineno=node.lineno)
            node.set_environment(self.environment)
            super().visit_For(node, frame)

        def visit_Concat(self, node: nodes.Concat, frame: Any) -> None:
            self.write("environment.concat_parts((")
            for part in node.nodes:
                self.visit(part, frame)
                self.write(", ")
            self.write("))")

    class Formatter(SandboxedFormatter):
        """str.format with a bound on each field's width and on the whole result."""

        def __init__(self, env: Any) -> None:
            super().__init__(env)
            self.total = 0

        def convert_field(self, value: Any, conversion: str | None) -> Any:
            if conversion and _contains_token(value, nonce):
                raise SecretUseError(OPAQUE.format(f"converted with !{conversion}"))
            return super().convert_field(value, conversion)

        def format_field(self, value: Any, format_spec: str) -> Any:
            if not isinstance(value, str) and _contains_token(value, nonce):
                raise SecretUseError(OPAQUE.format("printed inside a list or mapping (print "
                                                   "or join the items instead)"))
            widths = [int(n) if len(n) < 12 else MAX_ARGUMENT + 1
                      for n in re.findall(r"\d+", format_spec)]
            budget.check_size(max(widths, default=0), "a format field's width")
            result = super().format_field(value, format_spec)
            self.total += _text_len(result)
            budget.check_size(self.total, "a formatted string")
            return result

    class Sandbox(ImmutableSandboxedEnvironment):
        intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
        code_generator_class = BudgetCodeGenerator

        def getattr(self, obj: Any, attribute: str) -> Any:
            budget.tick()
            if isinstance(obj, SecretText):
                raise SecretUseError(OPAQUE.format(f"read through .{attribute}"))
            return super().getattr(obj, attribute)

        def getitem(self, obj: Any, argument: Any) -> Any:
            budget.tick()
            if isinstance(obj, SecretText):
                raise SecretUseError(OPAQUE.format("indexed or sliced"))
            return super().getitem(obj, argument)

        def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
            _check_binop(budget, operator, left, right, nonce)
            return built(super().call_binop(context, operator, left, right))

        def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
            budget.step()
            _precheck_method(budget, __obj, args, kwargs)
            return built(super().call(__context, __obj, *args, **kwargs))

        def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
            import types

            if not isinstance(value, types.MethodType | types.BuiltinMethodType) or \
                    value.__name__ not in ("format", "format_map") or \
                    not isinstance(value.__self__, str):
                return None
            template = str.__str__(value.__self__)
            mapping = value.__name__ == "format_map"

            def formatted(*args: Any, **kwargs: Any) -> str:
                if mapping:
                    if kwargs or len(args) != 1:
                        raise TypeError("format_map() takes exactly one mapping")
                    args, kwargs = (), args[0]
                return built(Formatter(self).vformat(template, args, kwargs))

            return formatted

        def counted(self, iterable: Iterable[Any]) -> Iterator[Any]:
            """Iterate, counting each item against the manifest's steps."""
            for item in iterable:
                budget.step()
                yield item

        def concat_parts(self, parts: tuple[Any, ...]) -> str:
            """`a ~ b ~ c`, bounded."""
            return self.concat(output(part) for part in parts)

    def built(value: Any) -> Any:
        if isinstance(value, str | bytes | list | tuple | dict):
            budget.build(size_of(value), "a built value")
        elif isinstance(value, int) and not isinstance(value, bool) and \
                value.bit_length() > MAX_INT_BITS:
            raise TemplateError(f"a number of more than {MAX_INT_BITS} bits is too large")
        return _mark(value, nonce)

    def output(value: Any) -> str:
        """`{{ value }}` as text: counted, bounded, tokens kept opaque."""
        budget.tick()
        if isinstance(value, str):
            return value
        if not isinstance(value, Undefined):
            budget.check_size(size_of(value) * 4, "a printed value")
            if _contains_token(value, nonce):
                raise SecretUseError(OPAQUE.format("printed inside a list or mapping (print "
                                                   "or join the items instead)"))
        return built(str(value))

    def concat(parts: Iterable[Any]) -> str:
        """Join output pieces (a rendered value, a macro's body, a `{% set %}` block)."""
        pieces = []
        total = 0
        for piece in parts:
            total += _text_len(piece)
            budget.check_size(total, "a rendered value")
            pieces.append(piece)
        return built("".join(pieces))

    def guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        offset = 1 if _PassArg.from_obj(func) is not None else 0

        @wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            budget.tick()
            subject = args[offset:]
            value = subject[0] if subject else None
            if name not in _WHOLE_FILTERS and isinstance(value, SecretText):
                raise SecretUseError(OPAQUE.format(f"read by the filter '{name}'"))
            if name not in _ITEM_FILTERS and not isinstance(value, str) and \
                    _contains_token(value, nonce):
                raise SecretUseError(OPAQUE.format(f"read by the filter '{name}'"))
            _precheck_filter(budget, name, subject, kwargs, nonce)
            return built(func(*args, **kwargs))

        return run

    def guarded_test(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
        offset = 1 if _PassArg.from_obj(func) is not None else 0

        @wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            budget.tick()
            value = args[offset] if len(args) > offset else None
            if name not in _WHOLE_TESTS and _contains_token(value, nonce):
                raise SecretUseError(OPAQUE.format(f"tested with '{name}'"))
            return func(*args, **kwargs)

        return run

    env = Sandbox(undefined=StrictUndefined, autoescape=False, finalize=output)
    env.concat = concat  # every join of output pieces, including the whole rendered value
    # Only what a manifest needs: lipsum, cycler and joiner are attack surface, not features.
    for name in ("lipsum", "cycler", "joiner"):
        env.globals.pop(name, None)
    env.filters = {name: guarded_filter(name, f) for name, f in env.filters.items()}
    env.tests = {name: guarded_test(name, f) for name, f in env.tests.items()}
    return env
