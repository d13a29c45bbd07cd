"""Building a commented YAML document with ruamel.yaml: the converters' only YAML code.

Comments explain where each value came from. Short notes go at the end of the line; longer
ones go on their own lines above the key, wrapped, so the file stays readable.
"""

from __future__ import annotations

import io
import textwrap
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

INDENT = 2
WIDTH = 96
_EOL_LIMIT = 60  # longer end-of-line notes go above the key instead


def mapping(items: dict[str, Any] | None = None, *, flow: bool = False) -> CommentedMap:
    """A mapping (nested plain dicts and lists become commented ones too)."""
    node = CommentedMap()
    for key, value in (items or {}).items():
        node[key] = to_node(value)
    if flow:
        node.fa.set_flow_style()
    return node


def sequence(items: list[Any], *, flow: bool = False) -> CommentedSeq:
    """A sequence (nested plain dicts and lists become commented ones too)."""
    node = CommentedSeq(to_node(v) for v in items)
    if flow:
        node.fa.set_flow_style()
    return node


def to_node(value: Any) -> Any:
    """Plain data as ruamel nodes; commented nodes are kept as they are."""
    if isinstance(value, CommentedMap | CommentedSeq):
        return value
    if isinstance(value, dict):
        return mapping(value)
    if isinstance(value, list):
        return sequence(value)
    return value


def note(node: CommentedMap, key: str, text: str, depth: int, *, above: bool = False) -> None:
    """Attach `text` to `key` of `node`, which sits `depth` mappings deep in the document.

    A key takes one end-of-line note and one note above it; a second of either kind replaces
    the first.
    """
    if not text:
        return
    if not above and len(text) <= _EOL_LIMIT and "\n" not in text:
        node.yaml_add_eol_comment(text, key, column=0)
        return
    lines: list[str] = []
    for paragraph in text.split("\n"):
        lines.extend(_wrap(paragraph, WIDTH - depth * INDENT - 2))
    node.yaml_set_comment_before_after_key(key, before="\n".join(lines), indent=depth * INDENT)


def header(node: CommentedMap, text: str) -> None:
    """A comment block at the top of the document."""
    wrapped: list[str] = []
    for paragraph in text.split("\n"):
        wrapped.extend(_wrap(paragraph, WIDTH - 2))
    node.yaml_set_start_comment("\n".join(wrapped))


def _wrap(text: str, width: int) -> list[str]:
    # File names and paths hold hyphens: never split a line inside one.
    return textwrap.wrap(text, width, break_on_hyphens=False, break_long_words=False) or [""]


def dump(document: CommentedMap) -> str:
    """The document as YAML text."""
    yaml = YAML()
    yaml.indent(mapping=INDENT, sequence=INDENT + 2, offset=INDENT)
    yaml.width = 4096  # never fold long strings (commands): they must read back verbatim
    stream = io.StringIO()
    yaml.dump(document, stream)
    return stream.getvalue()
