"""Which paths under src_dir an upload leaves out: gitignore syntax, stdlib only.

Sources, in order (later lines win, as in one gitignore file):
1. the ignore file at the top of src_dir, chosen as Azure ML chooses it for a snapshot:
   `.amlignore` if it exists, else `.gitignore`; never both, and only the top-level one;
2. the upload's `exclude:` patterns from the manifest, same syntax.

Syntax (git's): `#` comments, `!` re-includes, a trailing `/` matches folders only, a `/` at
the start or in the middle anchors the pattern to src_dir (else it matches at any depth),
`*` `?` `[...]` never match `/`, `**/` `/**/` `/**` span folders, `\\` escapes.
As in git, a file inside an excluded folder cannot be re-included: the walk never enters
an excluded folder. The ignore file itself is uploaded unless a pattern excludes it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

IGNORE_FILES = (".amlignore", ".gitignore")

_POSIX_CLASSES = {
    "alnum": "a-zA-Z0-9",
    "alpha": "a-zA-Z",
    "blank": " \\t",
    "cntrl": "\\x00-\\x1f\\x7f",
    "digit": "0-9",
    "graph": "!-~",
    "lower": "a-z",
    "print": " -~",
    "punct": "!-/:-@\\[-`{-~",
    "space": " \\t\\n\\r\\f\\v",
    "upper": "A-Z",
    "xdigit": "0-9A-Fa-f",
}


@dataclass(frozen=True, slots=True)
class _Rule:
    regex: re.Pattern[str]
    negate: bool
    dir_only: bool


class IgnoreRules:
    """An ordered list of gitignore patterns; the last one matching a path decides."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._rules = [r for r in (_compile(p) for p in patterns) if r is not None]

    def __bool__(self) -> bool:
        return bool(self._rules)

    def ignored(self, relpath: str, is_dir: bool) -> bool:
        """Whether `relpath` (posix, relative to src_dir) is left out.

        Only the path itself is tested: callers walk top-down and do not enter a folder
        that is ignored, which is what gives git's rule for files inside it.
        """
        for rule in reversed(self._rules):
            if rule.dir_only and not is_dir:
                continue
            if rule.regex.fullmatch(relpath):
                return not rule.negate
        return False


def load_ignore_rules(src_dir: Path, exclude: Sequence[str] = ()) -> IgnoreRules:
    """The rules for one upload: src_dir's ignore file (see module doc), then `exclude`."""
    lines: list[str] = []
    for name in IGNORE_FILES:
        candidate = src_dir / name
        if candidate.is_file():
            lines = candidate.read_text(encoding="utf-8", errors="replace").splitlines()
            break
    return IgnoreRules([*lines, *exclude])


def _compile(line: str) -> _Rule | None:
    line = _strip_trailing_spaces(line.rstrip("\r\n"))
    if not line or line.startswith("#"):
        return None
    negate = line.startswith("!")
    if negate:
        line = line[1:]
    dir_only = line.endswith("/")
    line = line.rstrip("/")
    if not line or (line.endswith("\\") and not line.endswith("\\\\")):
        return None  # git treats a pattern ending in a lone backslash as invalid
    # A slash left at the start or in the middle anchors the pattern to src_dir.
    anchored = "/" in line
    line = line.lstrip("/")
    segments = line.split("/")
    body = ""
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "**":
            body += ".+" if last else "(?:.+/)?"
        else:
            body += _segment_regex(segment) + ("" if last else "/")
    if not anchored:
        body = "(?:.+/)?" + body
    try:
        return _Rule(re.compile(body, re.DOTALL), negate, dir_only)
    except re.error:
        return None  # e.g. a reversed range [z-a]: matches nothing, as in git


def _strip_trailing_spaces(line: str) -> str:
    stripped = line.rstrip(" ")
    if stripped.endswith("\\") and len(stripped) < len(line):
        return stripped + " "  # "\ " keeps one escaped space
    return stripped


def _segment_regex(segment: str) -> str:
    out: list[str] = []
    i, n = 0, len(segment)
    while i < n:
        c = segment[i]
        if c == "*":
            out.append("[^/]*")
            while i + 1 < n and segment[i + 1] == "*":
                i += 1
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            bracket = _bracket_regex(segment, i)
            if bracket is not None:
                regex, i = bracket
                out.append(regex)
                continue
            out.append(re.escape(c))
        elif c == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(segment[i]))
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _bracket_regex(segment: str, start: int) -> tuple[str, int] | None:
    """A `[...]` expression at `start` as a regex class and the index after it; None if
    it never closes (then `[` is literal, as in git)."""
    i, n = start + 1, len(segment)
    negate = i < n and segment[i] in "!^"
    if negate:
        i += 1
    items: list[str] = []
    first = True
    while i < n:
        c = segment[i]
        if c == "]" and not first:
            cls = ("[^" if negate else "[") + "".join(items) + "]"
            return "(?!/)" + cls, i + 1
        first = False
        if c == "[" and segment.startswith("[:", i):
            end = segment.find(":]", i + 2)
            if end != -1 and segment[i + 2 : end] in _POSIX_CLASSES:
                items.append(_POSIX_CLASSES[segment[i + 2 : end]])
                i = end + 2
                continue
        if c == "\\" and i + 1 < n:
            i += 1
            c = segment[i]
        if i + 2 < n and segment[i + 1] == "-" and segment[i + 2] != "]":
            items.append(_class_char(c) + "-" + _class_char(segment[i + 2]))
            i += 3
            continue
        items.append(_class_char(c))
        i += 1
    return None


def _class_char(c: str) -> str:
    return "\\" + c if c in "\\]^-[" else c
