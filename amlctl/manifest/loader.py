"""Load a manifest: YAML with positions -> templating -> pydantic models -> cross checks.

Every problem is reported at once as `FILE:LINE:COL: field.path: message`. The YAML tree is
walked once into plain data plus a position index, so later checks can point at lines too.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amlctl.errors import ManifestError, Problem, UsageError
from amlctl.manifest.template import Renderer, SensitiveStr, TemplateError, has_template

MAX_FILE_BYTES = 1024 * 1024  # a manifest is config, not data
MAX_VALUES = 100_000  # bounds alias expansion (billion laughs) in time and memory
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


@dataclass
class _Walk:
    """State of one YAML-to-data walk."""

    file: str
    positions: dict[Path_, tuple[int, int]] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    count: int = 0


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
        raise ManifestError(walk.problems)
    if not isinstance(data, dict):
        raise ManifestError([Problem(str(file), 1, 1, "", "the manifest must be a mapping")])

    variables = dict(data.get("vars") or {}) if isinstance(data.get("vars"), dict) else {}
    for var_file in var_files:
        variables.update(_read_var_file(Path(var_file)))
    variables.update(var_overrides or {})

    renderer = Renderer({}, environ=environ, allow_missing_secrets=allow_missing_secrets)
    variables = _render_tree(variables, ("vars",), renderer, walk)
    renderer.set_vars(variables)
    rendered = {
        key: value if key == "vars" else _render_tree(value, (key,), renderer, walk)
        for key, value in data.items()
    }
    if "vars" in rendered:
        rendered["vars"] = variables
    if walk.problems:
        raise ManifestError(walk.problems)

    manifest = _validate_models(rendered, walk)
    if walk.problems:
        raise ManifestError(walk.problems)

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
        raise ManifestError(errors)
    loaded.warnings.extend(p for p in problems if p.severity != "error")
    return loaded


def locate(loaded_positions: Mapping[Path_, tuple[int, int]], path: Path_) -> tuple[int, int]:
    """Line and column of the deepest known prefix of `path`."""
    for end in range(len(path), -1, -1):
        position = loaded_positions.get(path[:end])
        if position:
            return position
    return (1, 1)


def problem_at(
    file: str, positions: Mapping[Path_, tuple[int, int]], path: Path_, message: str,
    severity: str = "error",
) -> Problem:
    """A Problem located at the position of `path` in the manifest."""
    line, column = locate(positions, path)
    dotted = ".".join(str(p) for p in path)
    return Problem(file, line, column, dotted, message, severity)


# --- YAML -----------------------------------------------------------------------------------


def _read_yaml(file: Path) -> Any:
    try:
        size = file.stat().st_size
    except FileNotFoundError:
        raise UsageError(f"{file}: no such manifest (use -f FILE or set AMLCTL_FILE)") from None
    if size > MAX_FILE_BYTES:
        raise ManifestError(
            [Problem(str(file), None, None, "", f"file is {size} bytes; the limit is "
                     f"{MAX_FILE_BYTES} bytes for a manifest")]
        )
    text = file.read_bytes().decode("utf-8", errors="replace")
    return _parse_yaml(text, str(file))


def _parse_yaml(text: str, name: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.constructor import DuplicateKeyError
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    try:
        return yaml.load(text)
    except DuplicateKeyError as err:
        mark = err.problem_mark
        key = _duplicate_key_name(err)
        raise ManifestError(
            [Problem(name, mark.line + 1, mark.column + 1, "", f"duplicate key {key}")]
        ) from None
    except MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        line = mark.line + 1 if mark else None
        column = mark.column + 1 if mark else None
        message = " ".join(p for p in (err.context, err.problem) if p)
        raise ManifestError(
            [Problem(name, line, column, "", f"YAML syntax error: {message}")]
        ) from None
    except YAMLError as err:
        raise ManifestError([Problem(name, None, None, "", f"YAML error: {err}")]) from None


def _duplicate_key_name(err: Exception) -> str:
    problem = getattr(err, "problem", "") or ""
    # ruamel says: found duplicate key "x" with value "..." (original value: "...")
    if "duplicate key" in problem:
        return problem.split("duplicate key", 1)[1].split(" with value", 1)[0].strip()
    return ""


def _read_var_file(file: Path) -> dict[str, Any]:
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as err:
        raise UsageError(f"--var-file {file}: {err.strerror}") from None
    raw = _parse_yaml(text, str(file))
    walk = _Walk(file=str(file))
    data = _to_data(raw, (), walk)
    if walk.problems:
        raise ManifestError(walk.problems)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ManifestError([Problem(str(file), 1, 1, "", "a var file must be a mapping")])
    return data


def _to_data(node: Any, path: Path_, walk: _Walk) -> Any:
    """Copy the ruamel tree into plain dicts/lists, recording each value's position."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    walk.count += 1
    if walk.count > MAX_VALUES:
        if walk.count == MAX_VALUES + 1:
            walk.problems.append(Problem(
                walk.file, None, None, ".".join(map(str, path)),
                f"the manifest expands to more than {MAX_VALUES} values "
                "(anchors and aliases nested too deep?)",
            ))
        return None
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
                walk.problems.append(Problem(
                    walk.file, line, column, ".".join(map(str, child_path)),
                    f"keys must be strings, got {type(key).__name__} {key!r}",
                ))
            result[str(key)] = _to_data(node[key], child_path, walk)
            if walk.count > MAX_VALUES:
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
            if walk.count > MAX_VALUES:
                break
        return items
    return _plain_scalar(node)


def _key_position(node: Any, key: Any) -> tuple[int, int] | None:
    try:
        line, column = node.lc.key(key)
    except (KeyError, TypeError, AttributeError):
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


def _render_tree(value: Any, path: Path_, renderer: Renderer, walk: _Walk) -> Any:
    if isinstance(value, dict):
        return {k: _render_tree(v, (*path, k), renderer, walk) for k, v in value.items()}
    if isinstance(value, list):
        return [_render_tree(v, (*path, i), renderer, walk) for i, v in enumerate(value)]
    if isinstance(value, str) and has_template(value):
        try:
            return renderer.render(value)
        except TemplateError as err:
            walk.problems.append(problem_at(walk.file, walk.positions, path, str(err)))
            return value
    return value


# --- models ----------------------------------------------------------------------------------


def _validate_models(data: dict[str, Any], walk: _Walk) -> Any:
    from pydantic import ValidationError

    from amlctl.manifest.models import MODEL_OF_MAPPING, Manifest

    registry: dict[int, type] = {}
    token = MODEL_OF_MAPPING.set(registry)
    try:
        return Manifest.model_validate(data)
    except ValidationError as err:
        seen: set[tuple[Path_, str]] = set()
        for error in err.errors(include_url=False):
            data_path, parent = _data_path(data, error["loc"])
            message = _message(error, parent, registry)
            if (data_path, message) in seen:
                continue
            seen.add((data_path, message))
            walk.problems.append(problem_at(walk.file, walk.positions, data_path, message))
        return None
    finally:
        MODEL_OF_MAPPING.reset(token)


def _data_path(data: Any, loc: tuple[Any, ...]) -> tuple[Path_, Any]:
    """The part of a pydantic error location that exists in the data (drops union tags)."""
    path: list[str | int] = []
    node, parent = data, None
    for part in loc:
        if isinstance(node, dict) and isinstance(part, str) and part in node:
            parent, node = node, node[part]
            path.append(part)
        elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
            parent, node = node, node[part]
            path.append(part)
        elif isinstance(node, dict) and part == loc[-1] and isinstance(part, str):
            path.append(part)  # a missing key: point at its parent, name the key
            parent = node
            break
    return tuple(path), parent


def _message(error: Any, parent: Any, registry: Mapping[int, type]) -> str:
    kind = error["type"]
    key = error["loc"][-1] if error["loc"] else ""
    if kind == "extra_forbidden":
        model = registry.get(id(parent))
        hint = ""
        if model is not None:
            close = difflib.get_close_matches(str(key), list(model.model_fields), n=1)
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
    message = error["msg"]
    value = error.get("input")
    if isinstance(value, SensitiveStr):
        return message
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return f"{message} (got {value!r})"
    return message
