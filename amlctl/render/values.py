"""How one attribute value is shown in text views."""

from __future__ import annotations

import json
from typing import Any

SENSITIVE = "(sensitive)"


def show(value: Any, sensitive: bool = False) -> str:
    """A value as a short literal: strings quoted, maps and lists as compact JSON."""
    if sensitive:
        return SENSITIVE
    if value is None:
        return "null"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return json.dumps(value, sort_keys=True, separators=(", ", ": "))


def human_bytes(count: int) -> str:
    """1536 -> '1.5 KiB'."""
    size = float(count)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{count} B"
