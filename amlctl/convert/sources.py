"""Reading Batch AI JSON files as their users wrote them.

Accepts API 2018-05-01 and 2017-09-01-preview files, with or without the `properties`
wrapper, and ARM child resources (`name`, `type`, `apiVersion`, `properties`). Every field
path this module hands out is the path in the file as written, so the report can name it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from amlctl.convert.errors import ConvertError

Kind = Literal["cluster", "job"]
PathPart = str | int

API_2018 = "2018-05-01"
API_2017 = "2017-09-01-preview"

# Keys that only ever sit at the top of a file, outside `properties`.
ENVELOPE_KEYS = ("$schema", "location", "name", "type", "apiVersion", "id", "tags")

# Fields that only the 2017-09-01-preview job schema has.
_PREVIEW_JOB_KEYS = ("experimentName", "toolType")


@dataclass(frozen=True)
class SourceFile:
    """One Batch AI cluster or job file, parsed.

    `props` is the cluster or job definition (the `properties` object, or the whole file when
    it has no wrapper); `prefix` is where `props` sits in the file, for field paths.
    """

    path: Path
    kind: Kind
    api_version: str
    raw: dict[str, Any]
    props: dict[str, Any]
    prefix: tuple[PathPart, ...]
    label: str = ""  # set when two inputs share a file name

    @property
    def name(self) -> str:
        """The file as the report and manifest comments name it: its name, or the path given
        when another input has the same name."""
        return self.label or self.path.name

    def field(self, *parts: PathPart) -> str:
        """Dotted path of a field of `props`, as written in the file."""
        return format_path((*self.prefix, *parts))

    def get(self, *parts: PathPart, default: Any = None) -> Any:
        """The value at `parts` under `props`, or `default`."""
        node: Any = self.props
        for part in parts:
            in_dict = isinstance(node, dict) and isinstance(part, str) and part in node
            in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
            if in_dict or in_list:
                node = node[part]
            else:
                return default
        return node

    def envelope(self, key: str) -> Any:
        """A top-level key outside `properties` (legacy `location`, ARM `name`)."""
        if self.prefix:
            return self.raw.get(key)
        return None

    def leaf_paths(self) -> Iterator[str]:
        """The path of every leaf value in the file (empty mappings and lists count as leaves)."""
        yield from (format_path(p) for p in _leaves(self.raw, ()))

    def walk(self) -> Iterator[tuple[tuple[PathPart, ...], list[str]]]:
        """Every node of the file, outermost first: its path and the leaf paths below it."""
        yield from _walk(self.raw, ())


def format_path(parts: tuple[PathPart, ...]) -> str:
    """`("properties", "a", 0, "b")` -> `properties.a[0].b`."""
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + part
    return text


def load_source(path: Path, kind: Kind) -> SourceFile:
    """Read a Batch AI file passed as `kind`. Raises ConvertError when it cannot be used."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ConvertError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConvertError(f"{path}: cannot read it: {err}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConvertError(f"{path}:{err.lineno}:{err.colno}: not valid JSON: {err.msg}") from None
    if not isinstance(raw, dict):
        raise ConvertError(f"{path}: a Batch AI {kind} file holds a JSON object")

    wrapped = isinstance(raw.get("properties"), dict)
    props = raw["properties"] if wrapped else raw
    prefix: tuple[PathPart, ...] = ("properties",) if wrapped else ()
    _check_kind(path, kind, raw, props)
    return SourceFile(path, kind, _api_version(raw, props, kind), raw, props, prefix)


def _check_kind(path: Path, kind: Kind, raw: dict[str, Any], props: dict[str, Any]) -> None:
    schema = str(raw.get("$schema", ""))
    declared = "job" if schema.endswith("job.json") else (
        "cluster" if schema.endswith("cluster.json") else None)
    if declared is None:
        job_like = any(k.endswith("Settings") and k not in ("scaleSettings",
                                                             "userAccountSettings")
                       for k in props) or "nodeCount" in props
        cluster_like = any(k in props for k in ("vmSize", "scaleSettings", "nodeSetup",
                                                 "userAccountSettings", "subnet"))
        if job_like and not cluster_like:
            declared = "job"
        elif cluster_like and not job_like:
            declared = "cluster"
    if declared is not None and declared != kind:
        option = "--job" if declared == "job" else "--cluster"
        raise ConvertError(f"{path}: this is a Batch AI {declared} file, not a {kind} file; "
                           f"pass it with {option}")


def _api_version(raw: dict[str, Any], props: dict[str, Any], kind: Kind) -> str:
    declared = str(raw.get("$schema", "")) + " " + str(raw.get("apiVersion", ""))
    if API_2017 in declared:
        return API_2017
    if API_2018 in declared:
        return API_2018
    if kind == "job":
        if any(k in props or k in raw for k in _PREVIEW_JOB_KEYS):
            return API_2017
        if isinstance(props.get("priority"), int):
            return API_2017
        outputs = props.get("outputDirectories")
        if isinstance(outputs, list) and any(isinstance(o, dict) and "type" in o
                                             for o in outputs):
            return API_2017
    return API_2018


def _leaves(value: Any, path: tuple[PathPart, ...]) -> Iterator[tuple[PathPart, ...]]:
    if isinstance(value, dict) and value:
        for key, child in value.items():
            yield from _leaves(child, (*path, key))
    elif isinstance(value, list) and value:
        for index, child in enumerate(value):
            yield from _leaves(child, (*path, index))
    else:
        yield path


def _walk(value: Any, path: tuple[PathPart, ...]
          ) -> Iterator[tuple[tuple[PathPart, ...], list[str]]]:
    yield path, [format_path(p) for p in _leaves(value, path)]
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _walk(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _walk(child, (*path, index))


# `<AZURE_BATCHAI_STORAGE_ACCOUNT>`-style placeholders that `az batchai` filled in from its
# environment variables of the same name.
PLACEHOLDER = re.compile(r"<(AZURE_BATCHAI_[A-Z_]+)>")


def placeholder(value: Any) -> str | None:
    """The variable name if `value` is (or contains) an `az batchai` placeholder."""
    if isinstance(value, str):
        match = PLACEHOLDER.search(value)
        if match:
            return match.group(1)
    return None
