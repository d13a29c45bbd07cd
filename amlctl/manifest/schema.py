"""JSON Schema of the manifest, generated from the models (editors use it for completion).

Any value may be written as a template (`max_nodes: "{{ vars.nodes }}"` renders to the
integer 2), so wherever the models want something other than a free string, the schema also
accepts a string holding `{{`: editors and third-party validators then agree with
`amlctl validate` on the project's own manifests.
"""

from __future__ import annotations

import json
from typing import Any

SCHEMA_ID = "https://amlctl.dev/schemas/amlctl.schema.json"
TEMPLATE = {"type": "string", "pattern": r"\{\{", "description": "A template, e.g. "
            "\"{{ vars.nodes }}\", rendered before the value is checked."}
# Keys that annotate a schema rather than constrain it; they stay on the outer schema.
_ANNOTATIONS = ("title", "description", "default", "examples")


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an amlctl manifest."""
    from amlctl.manifest.models import Manifest

    schema = _with_templates(Manifest.model_json_schema())
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "amlctl manifest",
        **schema,
    }


def schema_text() -> str:
    """The schema as the stable text written to schemas/amlctl.schema.json."""
    return json.dumps(manifest_schema(), indent=2, sort_keys=True) + "\n"


def _with_templates(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of an object schema whose every value position also accepts a template."""
    out = dict(schema)
    if "$defs" in out:
        out["$defs"] = {name: _with_templates(d) for name, d in out["$defs"].items()}
    if "properties" in out:
        out["properties"] = {k: _value(v) for k, v in out["properties"].items()}
    if isinstance(out.get("additionalProperties"), dict):
        out["additionalProperties"] = _value(out["additionalProperties"])
    if isinstance(out.get("items"), dict):
        out["items"] = _value(out["items"])
    for key in ("anyOf", "oneOf"):
        if key in out:
            out[key] = [_with_templates(branch) for branch in out[key]]
    return out


def _value(schema: dict[str, Any]) -> dict[str, Any]:
    """One value position: its own schema, or else a template string."""
    inner = _with_templates(schema)
    if _takes_any_string(inner):
        return inner
    outer = {k: inner.pop(k) for k in _ANNOTATIONS if k in inner}
    if list(inner) == ["anyOf"]:
        return {**outer, "anyOf": [*inner["anyOf"], TEMPLATE]}
    return {**outer, "anyOf": [inner, TEMPLATE]}


def _takes_any_string(schema: dict[str, Any]) -> bool:
    if any(k in schema for k in ("enum", "const", "pattern")):
        return False
    kind = schema.get("type")
    if kind == "string" or (isinstance(kind, list) and "string" in kind):
        return True
    return any(_takes_any_string(b) for b in schema.get("anyOf", ()))
