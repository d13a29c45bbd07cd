"""Load a manifest: YAML with positions -> templating -> pydantic models -> cross checks.

Every problem is reported at once as `FILE:LINE:COL: field.path: message`. The YAML tree is
walked once into plain data plus a position index, so later checks can point at lines too.
"""

from __future__ import annotations

import difflib
import errno
import os
import stat
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from amlctl.errors import ManifestError, Problem, UsageError
from amlctl.manifest.template import (
    BudgetError,
    Renderer,
    SensitiveStr,
    TemplateError,
    has_template,
)

MAX_FILE_BYTES = 1024 * 1024  # a manifest is config, not data
MAX_VALUES = 100_000  # bounds alias expansion (billion laughs) in time and memory
MAX_EXPANDED_TEXT = 8 * MAX_FILE_BYTES  # bounds aliases of a long string the same way
MAX_DEPTH = 64  # no manifest nests deeper; a hostile one must not exhaust the stack
DEFAULT_FILE = "amlctl.yaml"

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class LoadedManifest:
    """A valid manifest with what the rest of amlctl needs to act on it."""

    path: Path
    manifest: Any  # amlctl.manifest.models.Manifest (imported lazily)
    data: dict[str, Any]  # rendered plain data (secrets as SensitiveStr)
    positions: dict[Path_, tuple[int, int]]
    warnings: list[Problem] = field(default_factory=list)
    missing_secrets: list[str] = field(default_factory=list)

    @property
    def root(self) -> Path:
        """Folder the manifest's relative paths start from."""
        return self.path.parent


# Private working state, never compared or shown: no generated __eq__/__repr__ to compile.
@dataclass(eq=False, repr=False)
class _Walk:
    """State of one YAML-to-data walk."""

    file: str
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    count: int = 0
    stopped: bool = False  # a size or depth limit was hit; the rest is not walked
    text: int = 0  # characters of all strings, aliases expanded
    budget_spent: bool = False  # the templates' budget is used up; the rest is not rendered


def resolve_manifest_path(file: str | os.PathLike[str] | None) -> Path:
    """The manifest path from -f, else AMLCTL_FILE, else ./amlctl.yaml."""
    chosen = file or os.environ.get("AMLCTL_FILE") or DEFAULT_FILE
    return Path(chosen)


def load_manifest(
    path: str | os.PathLike[str],
    *,
    var_overrides: Mapping[str, Any] | None = None,
    var_files: Sequence[str | os.PathLike[str]] = (),
    environ: Mapping[str, str] | None = None,
    allow_missing_secrets: bool = False,
) -> LoadedManifest:
    """Read, render and validate a manifest. Raises ManifestError with every problem found."""
    file = Path(path)
    raw = _read_yaml(file)
    walk = _Walk(file=str(file))
    data = _to_data(raw, (), walk)
    if walk.problems:
        raise _manifest_error(walk.problems)
    if data is None:
        raise ManifestError([Problem(str(file), 1, 1, "", "the manifest is empty")])
    if not isinstance(data, dict):
        raise ManifestError([Problem(
            str(file), 1, 1, "", f"the manifest must be a mapping (version, name, workspace, "
            f"...), not {_kind(data)}",
        )])

    variables = dict(data.get("vars") or {}) if isinstance(data.get("vars"), dict) else {}
    origins: dict[str, _Walk] = {}  # the var file a variable was last set by
    for var_file in var_files:
        values, var_walk = _read_var_file(Path(var_file))
        variables.update(values)
        origins.update(dict.fromkeys(values, var_walk))
    for name in var_overrides or {}:
        origins.pop(name, None)
    variables.update(var_overrides or {})

    renderer = Renderer({}, environ=environ, allow_missing_secrets=allow_missing_secrets)
    variables = _render_vars(variables, origins, renderer, walk)
    renderer.set_vars(variables)
    rendered = {
        key: value if key == "vars" else _render_tree(value, (key,), renderer, walk)
        for key, value in data.items()
    }
    if "vars" in rendered:
        rendered["vars"] = variables
    _check_nul(rendered, (), walk)
    if walk.problems:
        raise _manifest_error(walk.problems)

    manifest = _validate_models(rendered, walk)
    if walk.problems:
        raise _manifest_error(walk.problems)

    from amlctl.manifest.validate import check_manifest

    loaded = LoadedManifest(
        path=file,
        manifest=manifest,
        data=rendered,
        positions=walk.positions,
        missing_secrets=list(dict.fromkeys(renderer.missing_secrets)),
    )
    problems = check_manifest(loaded)
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise _manifest_error(errors)
    loaded.warnings.extend(p for p in problems if p.severity != "error")
    return loaded


def _manifest_error(problems: list[Problem]) -> ManifestError:
    """All problems in file order (a stable sort keeps same-place problems as found)."""
    return ManifestError(sorted(problems, key=lambda p: (p.file, p.line or 0, p.column or 0)))


def _kind(value: Any) -> str:
    """How a YAML reader names the type of a value, for messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if value is None:
        return "null"
    return "a string"


def locate(loaded_positions: Mapping[Path_, tuple[int, int]], path: Path_) -> tuple[int, int]:
    """Line and column of the deepest known prefix of `path`."""
    for end in range(len(path), -1, -1):
        position = loaded_positions.get(path[:end])
        if position:
            return position
    return (1, 1)


def _printable(text: str) -> str:
    """`text` with control characters escaped, so a message cannot drive the terminal."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def problem_at(
    file: str, positions: Mapping[Path_, tuple[int, int]], path: Path_, message: str,
    severity: str = "error",
) -> Problem:
    """A Problem located at the position of `path` in the manifest."""
    line, column = locate(positions, path)
    # a key may hold control characters (terminal escapes): shown escaped, never raw
    dotted = _printable(".".join(str(p) for p in path))
    message = _printable(message)
    return Problem(file, line, column, dotted, message, severity)


# --- YAML -----------------------------------------------------------------------------------


def _read_yaml(file: Path) -> Any:
    text = read_text_file(file, "manifest")
    return _parse_yaml(text, str(file))


def read_text_file(file: Path, what: str) -> str:
    """The UTF-8 text of a manifest or var file, read safely from untrusted paths.

    Only a regular file is read, and at most MAX_FILE_BYTES of it: a named pipe (which would
    block), a device (`/dev/zero`, which never ends) or a folder is refused without reading.
    Invalid UTF-8 is an error at its line and column, not silently replaced.
    """
    name = str(file)
    if not name:
        raise UsageError(f"the {what} path is empty (use -f FILE or set AMLCTL_FILE)")
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(
        os, "O_NOCTTY", 0)
    try:
        fd = os.open(file, flags)
    except OSError as err:
        raise UsageError(_open_error(file, what, err)) from None
    except ValueError:  # a NUL in the name: no file can have it
        raise UsageError(f"{what} {str(file)!r}: the name contains a NUL character") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            kind = ("a folder" if stat.S_ISDIR(info.st_mode)
                    else "a named pipe" if stat.S_ISFIFO(info.st_mode)
                    else "a device" if stat.S_ISCHR(info.st_mode) or stat.S_ISBLK(info.st_mode)
                    else "a socket" if stat.S_ISSOCK(info.st_mode) else "not a regular file")
            raise UsageError(f"{what} {file}: is {kind}; a {what} must be a regular file")
        if info.st_size > MAX_FILE_BYTES:
            raise _too_big(file, info.st_size, what)
        chunks = []
        size = 0
        while size <= MAX_FILE_BYTES:  # the file may grow while it is read
            chunk = os.read(fd, MAX_FILE_BYTES + 1 - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as err:
        raise UsageError(_open_error(file, what, err)) from None
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise _too_big(file, size, what, more=True)
    return _decode(b"".join(chunks), name)


def _too_big(file: Path, size: int, what: str, more: bool = False) -> ManifestError:
    shown = f"more than {MAX_FILE_BYTES}" if more else str(size)
    return ManifestError([Problem(str(file), None, None, "", f"file is {shown} bytes; the "
                                  f"limit is {MAX_FILE_BYTES} bytes for a {what}")])


def _open_error(file: Path, what: str, err: OSError) -> str:
    """A one-line reason a file could not be opened."""
    reasons = {
        errno.ENOENT: "no such file" + (" (use -f FILE or set AMLCTL_FILE)"
                                        if what == "manifest" else ""),
        errno.ELOOP: "too many levels of symbolic links (a symlink loop?)",
        errno.ENAMETOOLONG: "file name too long (a path component is over 255 bytes?)",
        errno.EACCES: "permission denied",
        errno.ENOTDIR: "a part of the path is not a folder",
        errno.EISDIR: "is a folder",
    }
    reason = reasons.get(err.errno or 0, err.strerror or str(err))
    shown = str(file)
    if len(shown) > 200:
        shown = shown[:100] + "..." + shown[-40:]
    return f"{what} {shown}: {reason}"


def _decode(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        line_start = data.rfind(b"\n", 0, err.start) + 1
        column = len(data[line_start:err.start].decode("utf-8", errors="replace")) + 1
        bad = data[err.start:err.end].hex(" ")
        raise ManifestError([Problem(name, line, column, "", f"invalid UTF-8 (byte {bad}): "
                                     "save the file as UTF-8")]) from None


def _parse_yaml(text: str, name: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    yaml.Scanner = _depth_limited_scanner()
    yaml.Constructor = _quiet_duplicate_constructor()
    try:
        return yaml.load(text)
    except DuplicateKeyError as err:
        mark = err.problem_mark
        key = _duplicate_key_name(err)
        raise ManifestError([Problem(
            name, mark.line + 1, mark.column + 1, "",
            f"duplicate key {key} (a key may appear only once in a mapping)",
        )]) from None
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        raise ManifestError(
            [Problem(name, line, column, "", f"YAML syntax error: {_syntax_message(err)}")]
        ) from None
    except YAMLError as err:
        raise ManifestError([Problem(name, None, None, "", f"YAML error: {err}")]) from None
    except RecursionError:
        # ruamel's parser recurses once per nesting level; a hostile file can exhaust the stack
        raise ManifestError(
            [Problem(name, None, None, "", f"YAML nests deeper than {MAX_DEPTH} levels")]
        ) from None


@cache
def _depth_limited_scanner() -> type:
    """ruamel's scanner, refusing flow collections (`[[[...`) nested past MAX_DEPTH.

    Its cost grows with the square of the flow depth: a small hostile file would take seconds
    before failing on the parser's recursion.
    """
    from ruamel.yaml.error import MarkedYAMLError
    from ruamel.yaml.scanner import RoundTripScanner

    class DepthLimitedScanner(RoundTripScanner):  # type: ignore[misc]
        def fetch_flow_collection_start(self, token_class: Any, to_push: str) -> None:
            if len(self.flow_context) >= MAX_DEPTH:
                raise MarkedYAMLError(
                    problem=f"collections nest deeper than {MAX_DEPTH} levels",
                    problem_mark=self.reader.get_mark(),
                )
            super().fetch_flow_collection_start(token_class, to_push)

    return DepthLimitedScanner


@cache
def _quiet_duplicate_constructor() -> type:
    """ruamel's constructor, reporting a duplicate key without printing the values.

    ruamel's own message prints both values: an alias bomb under a duplicate key would be
    expanded into billions of items just to build that message.
    """
    from ruamel.yaml.constructor import DuplicateKeyError, RoundTripConstructor

    class QuietDuplicateConstructor(RoundTripConstructor):  # type: ignore[misc]
        def check_mapping_key(self, node: Any, key_node: Any, mapping: Any, key: Any,
                              value: Any) -> bool:
            if key in mapping:
                shown = key if isinstance(key, str | int | float | bool) else type(key).__name__
                shown = str(shown)[:60]
                raise DuplicateKeyError("while constructing a mapping", node.start_mark,
                                        f'found duplicate key "{shown}" with value',
                                        key_node.start_mark)
            return True

    return QuietDuplicateConstructor


def _syntax_message(err: Any) -> str:
    problem = (err.problem or "").strip()
    if "'\\t'" in problem:
        return "tab character: indent YAML with spaces, not tabs"
    context = (err.context or "").strip()
    mark = err.context_mark
    if context and mark is not None and mark is not err.problem_mark:
        return f"{problem} ({context} at line {mark.line + 1})"
    return " ".join(p for p in (context, problem) if p)


def _duplicate_key_name(err: Exception) -> str:
    problem = getattr(err, "problem", "") or ""
    # ruamel says: found duplicate key "x" with value "..." (original value: "...")
    if "duplicate key" in problem:
        return problem.split("duplicate key", 1)[1].split(" with value", 1)[0].strip()
    return ""


def _read_var_file(file: Path) -> tuple[dict[str, Any], _Walk]:
    """The variables of a var file, with the walk that knows where each is written."""
    text = read_text_file(file, "var file")
    raw = _parse_yaml(text, str(file))
    walk = _Walk(file=str(file))
    data = _to_data(raw, (), walk)
    if walk.problems:
        raise _manifest_error(walk.problems)
    if data is None:
        return {}, walk
    if not isinstance(data, dict):
        raise ManifestError([Problem(str(file), 1, 1, "", "a var file must be a mapping")])
    return data, walk


def _to_data(node: Any, path: Path_, walk: _Walk) -> Any:
    """Copy the ruamel tree into plain dicts/lists, recording each value's position."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    walk.count += 1
    if isinstance(node, str):
        walk.text += len(node)
    if walk.count > MAX_VALUES or len(path) > MAX_DEPTH or walk.text > MAX_EXPANDED_TEXT:
        if not walk.stopped:
            walk.stopped = True
            top = path[:1]  # the line of the top-level key is what a reader can find
            message = (
                f"the manifest expands to more than {MAX_VALUES} values "
                "(aliases of aliases: an alias bomb?)" if walk.count > MAX_VALUES
                else f"the manifest expands to more than {MAX_EXPANDED_TEXT} characters "
                "(aliases of a long string?)" if walk.text > MAX_EXPANDED_TEXT
                else f"values nest deeper than {MAX_DEPTH} levels"
            )
            walk.problems.append(problem_at(walk.file, walk.positions, top, message))
        return None
    if isinstance(node, CommentedMap | CommentedSeq):
        _check_tag(node, path, walk)
    if isinstance(node, CommentedMap):
        result: dict[str, Any] = {}
        for key in node:
            position = _key_position(node, key)
            child_path = (*path, str(key))
            if position:
                walk.positions[child_path] = position
            elif path in walk.positions:
                walk.positions[child_path] = walk.positions[path]
            if not isinstance(key, str):
                line, column = walk.positions.get(child_path, (None, None))
                shown = str(key).lower() if isinstance(key, bool) or key is None else str(key)
                walk.problems.append(Problem(
                    walk.file, line, column, ".".join(map(str, child_path)),
                    f"key {shown} is {_kind(key)}; quote it (\"{shown}\") to use it as a name",
                ))
            result[str(key)] = _to_data(node[key], child_path, walk)
            if walk.stopped:
                break
        return result
    if isinstance(node, CommentedSeq):
        items = []
        for index, item in enumerate(node):
            try:
                line, column = node.lc.item(index)
                walk.positions[(*path, index)] = (line + 1, column + 1)
            except (KeyError, TypeError, AttributeError):
                pass
            items.append(_to_data(item, (*path, index), walk))
            if walk.stopped:
                break
        return items
    _check_tag(node, path, walk)
    return _plain_scalar(node)


# Explicit YAML tags that only restate a plain type; anything else (!foo, !!python/...) is
# refused rather than silently read as a string.
_PLAIN_TAGS = frozenset(
    f"tag:yaml.org,2002:{kind}" for kind in ("str", "int", "float", "bool", "null", "map", "seq")
)


def _check_tag(node: Any, path: Path_, walk: _Walk) -> None:
    tag = getattr(node, "tag", None)
    value = getattr(tag, "value", None) if tag is not None else None
    if value and value not in _PLAIN_TAGS:
        shown = value.replace("tag:yaml.org,2002:", "!!")
        walk.problems.append(problem_at(
            walk.file, walk.positions, path, f"unsupported YAML tag {shown}"
        ))


def _key_position(node: Any, key: Any, depth: int = 0) -> tuple[int, int] | None:
    """Where `key` is written: in the mapping itself, or in a mapping merged with `<<:`."""
    try:
        line, column = node.lc.key(key)
    except (KeyError, TypeError, AttributeError):
        if depth > MAX_DEPTH:
            return None
        for merged in getattr(node, "merge", None) or ():
            source = merged[1] if isinstance(merged, tuple) else merged  # older ruamel: (i, map)
            if key in source:
                return _key_position(source, key, depth + 1)
        return None
    return (line + 1, column + 1)


def _plain_scalar(value: Any) -> Any:
    """ruamel's scalar subclasses (ScalarFloat, TaggedScalar...) to builtins."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, str):
        return str(value)
    return str(value)


# --- templating ------------------------------------------------------------------------------


def _render_vars(variables: dict[str, Any], origins: Mapping[str, _Walk], renderer: Renderer,
                 walk: _Walk) -> dict[str, Any]:
    """Render the variables; a problem in one set by a var file points into that file."""
    rendered = {}
    for name, value in variables.items():
        origin = origins.get(name)
        if origin is None:
            rendered[name] = _render_tree(value, ("vars", name), renderer, walk)
            continue
        origin.budget_spent = walk.budget_spent
        rendered[name] = _render_tree(value, (name,), renderer, origin)
        walk.budget_spent = origin.budget_spent
        walk.problems.extend(origin.problems)
        origin.problems.clear()
    return rendered


def _render_tree(value: Any, path: Path_, renderer: Renderer, walk: _Walk) -> Any:
    if isinstance(value, dict):
        return {k: _render_tree(v, (*path, k), renderer, walk) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, (*path, i), renderer, walk) for i, v in enumerate(value)]
    if isinstance(value, str) and has_template(value) and not walk.budget_spent:
        try:
            return renderer.render(value)
        except TemplateError as err:
            # the budget is the manifest's: once spent, every later template would fail too
            walk.budget_spent = isinstance(err, BudgetError)
            walk.problems.append(problem_at(walk.file, walk.positions, path,
                                            renderer.scrub(str(err))))
            return value
    return value


def _check_nul(value: Any, path: Path_, walk: _Walk) -> None:
    """A NUL character (YAML's "\\0") fits in no file name, argument or environment variable:
    refused everywhere, before anything tries to use it."""
    if isinstance(value, dict):
        for key, child in value.items():
            if isinstance(key, str) and "\0" in key:
                line, column = walk.positions.get((*path, key), locate(walk.positions, path))
                shown = ".".join(map(str, path))  # the parent: the key itself is unprintable
                walk.problems.append(Problem(walk.file, line, column, shown,
                                             f"key {key!r} contains a NUL character"))
            _check_nul(child, (*path, key), walk)
    elif isinstance(value, list):
        for index, child in enumerate(value):
            _check_nul(child, (*path, index), walk)
    elif isinstance(value, str) and "\0" in value:
        walk.problems.append(problem_at(walk.file, walk.positions, path,
                                        "contains a NUL character, which no file name, "
                                        "argument or environment variable can hold"))


# --- models ----------------------------------------------------------------------------------


def _validate_models(data: dict[str, Any], walk: _Walk) -> Any:
    from pydantic import ValidationError

    with _without_pydantic_plugins():
        from amlctl.manifest.models import MODEL_OF_MAPPING, Manifest

    registry: dict[int, type] = {}
    token = MODEL_OF_MAPPING.set(registry)
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        for path, message in _model_problems(err.errors(include_url=False), data, registry):
            walk.problems.append(problem_at(walk.file, walk.positions, path, message))
        return None
    finally:
        MODEL_OF_MAPPING.reset(token)


@contextmanager
def _without_pydantic_plugins() -> Iterator[None]:
    """Build the models without pydantic looking for plugins.

    The first validator pydantic builds reads the entry points of every installed package to
    find plugins (observability hooks). amlctl's models have no use for them, and next to
    azureml-sdk's hundreds of packages that scan costs more than validating a manifest.
    """
    name = "PYDANTIC_DISABLE_PLUGINS"
    if name in os.environ:  # the user chose; respect it
        yield
        return
    os.environ[name] = "__all__"
    try:
        yield
    finally:
        os.environ.pop(name, None)


@dataclass(eq=False, repr=False)  # private, never compared or shown
class _Failure:
    """One pydantic error mapped onto the data: where it is, and whether a union produced it."""

    path: Path_
    in_union: bool  # the location named a union member, not only keys and indexes
    error: Any
    parent: Any


def _model_problems(
    errors: list[Any], data: dict[str, Any], registry: Mapping[int, type]
) -> list[tuple[Path_, str]]:
    """(path, message) pairs from pydantic errors, union noise folded into one message each.

    A union reports one error per member that failed. The member that got deepest into the
    value says what is wrong; members that failed on the value's shape are dropped, and
    same-place shape failures become one "must be X, Y or Z".
    """
    failures = []
    for error in errors:
        path, in_union, parent = _data_path(data, error["loc"], error["type"])
        failures.append(_Failure(path, in_union, error, parent))
    paths = {f.path for f in failures}
    failures = [
        f for f in failures
        if not f.in_union or not any(len(p) > len(f.path) and p[:len(f.path)] == f.path
                                     for p in paths)
    ]
    grouped: dict[tuple[Path_, bool], list[_Failure]] = {}
    for failure in failures:
        grouped.setdefault((failure.path, failure.in_union), []).append(failure)

    result: list[tuple[Path_, str]] = []
    for (path, in_union), group in grouped.items():
        shapes = [_EXPECTED.get(f.error["type"]) for f in group]
        if in_union and len(group) > 1 and all(shapes):
            unique = list(dict.fromkeys(s for s in shapes if s))
            choices = ", ".join(unique[:-1]) + f" or {unique[-1]}" if len(unique) > 1 else unique[0]
            result.append((path, f"must be {choices}{_got(group[0].error)}"))
            continue
        for failure in group:
            message = _message(failure.error, failure.parent, registry)
            if (path, message) not in result:
                result.append((path, message))
    return result


def _data_path(data: Any, loc: tuple[Any, ...], kind: str) -> tuple[Path_, bool, Any]:
    """The part of a pydantic error location that exists in the data, whether other parts
    (union members) were skipped, and the mapping or list holding the value."""
    path: list[str | int] = []
    node, parent, skipped = data, None, False
    for index, part in enumerate(loc):
        in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            parent, node = node, node[part]
            path.append(part)
        elif kind == "missing" and index == len(loc) - 1 and isinstance(node, dict):
            path.append(part)  # a missing key: point at its parent, name the key
            parent = node
        else:
            skipped = True
    return tuple(path), skipped, parent


# What a value must be, by pydantic error type; also used to merge a union's errors.
_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "a boolean",
    "bool_parsing": "a boolean",
    "dict_type": "a mapping",
    "model_type": "a mapping",
    "model_attributes_type": "a mapping",
    "list_type": "a list",
}


def _message(error: Any, parent: Any, registry: Mapping[int, type]) -> str:
    kind = error["type"]
    loc = error["loc"]
    key = loc[-1] if loc else ""
    if kind == "extra_forbidden":
        model = registry.get(id(parent))
        hint = ""
        if model is not None:
            fields = list(model.model_fields)
            close = difflib.get_close_matches(str(key), fields, n=1) or [
                f for f in fields if f.startswith(str(key)) or str(key).startswith(f)
            ][:1]
            if close:
                hint = f" (did you mean '{close[0]}'?)"
        return f"unknown field '{key}'{hint}"
    if kind == "missing":
        return f"required field '{key}' is missing"
    if kind == "union_tag_invalid":
        expected = error.get("ctx", {}).get("expected_tags", "")
        return f"unknown type {error['input'].get('type')!r}; expected one of {expected}"
    if kind == "union_tag_not_found":
        return "missing 'type' that says which kind this is"
    if loc == ("version",) and kind == "literal_error":
        return f"unsupported manifest version{_got(error, '')}: this amlctl reads version 1"
    if kind in _EXPECTED:
        return f"must be {_EXPECTED[kind]}{_got(error)}"
    message = str(error["msg"])
    if message.startswith("Input should be "):
        message = "must be " + message.removeprefix("Input should be ")
    return f"{message}{_got(error)}"


def _got(error: Any, template: str = " (got {})") -> str:
    """The offending value for a message; never a secret, never a page of text."""
    if "input" not in error:
        return ""
    value = error["input"]
    if isinstance(value, SensitiveStr):
        return template.format("a secret") if template else ""
    if isinstance(value, dict | list) or value is None:
        shown = _kind(value)
    elif isinstance(value, bool):
        shown = "true" if value else "false"
    else:
        shown = repr(value)
        if len(shown) > 60:
            shown = shown[:50] + "..." + shown[-6:]
    return template.format(shown) if template else f" {shown}"
