"""JSON Schema of the manifest, generated from the models (editors use it for completion)."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_ID = "https://amlctl.dev/schemas/amlctl.schema.json"


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of an amlctl manifest."""
    from amlctl.manifest.models import Manifest

    schema = Manifest.model_json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "amlctl manifest",
        **schema,
    }


def schema_text() -> str:
    """The schema as the stable text written to schemas/amlctl.schema.json."""
    return json.dumps(manifest_schema(), indent=2, sort_keys=True) + "\n"
