"""The rendered manifest as YAML, secrets redacted (what `amlctl render` prints)."""

from __future__ import annotations

import io
from typing import Any

from amlctl.manifest.template import SensitiveStr

REDACTED = "(sensitive)"


def redact(value: Any) -> Any:
    """A copy of plain data with every secret value replaced by `(sensitive)`."""
    if isinstance(value, SensitiveStr):
        return REDACTED
    if isinstance(value, dict):
        return {k: redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v) for v in value]
    return value


def render_yaml(data: dict[str, Any]) -> str:
    """YAML text of rendered manifest data, secrets redacted, key order kept."""
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    yaml.sort_base_mapping_type_on_output = False  # keep the manifest's order
    out = io.StringIO()
    yaml.dump(redact(data), out)
    return out.getvalue()
