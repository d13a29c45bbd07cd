"""The plan as stable JSON for machines (format documented in docs/plan-json.md)."""

from __future__ import annotations

import json
from typing import Any

from amlctl.engine.plan import FORMAT_VERSION, Change, Plan
from amlctl.render.values import SENSITIVE


def plan_document(plan: Plan) -> dict[str, Any]:
    """The JSON document of a plan (no secret values: secrets appear as `(sensitive)`)."""
    return {
        "format_version": FORMAT_VERSION,
        "stack": plan.stack,
        "backend": plan.backend,
        "manifest": plan.manifest,
        "destroy": plan.destroy,
        "resource_changes": [_change(c) for c in plan.changes],
        "resource_drift": [
            {"address": d.address,
             "fields": [{"name": f.name,
                         "before": SENSITIVE if f.sensitive else f.before,
                         "after": SENSITIVE if f.sensitive else f.after}
                        for f in d.fields]}
            for d in plan.drift
        ],
        "notes": list(plan.notes),
        "summary": plan.counts(),
        "has_changes": plan.has_changes,
    }


def render_json(plan: Plan) -> str:
    """The JSON text of a plan."""
    return json.dumps(plan_document(plan), indent=2, sort_keys=False) + "\n"


def _redact(values: dict[str, Any] | None, sensitive: frozenset[str]) -> dict[str, Any] | None:
    if values is None:
        return None
    return {k: SENSITIVE if k in sensitive else v for k, v in values.items()}


def _change(change: Change) -> dict[str, Any]:
    return {
        "address": change.address,
        "type": change.kind,
        "name": change.name,
        "change": {
            "actions": change.action.json_actions,
            "before": _redact(change.before, change.sensitive_fields),
            "after": _redact(change.after, change.sensitive_fields),
            "replace_paths": [[f.name] for f in change.fields if f.forces_replacement],
            "fields": [
                {"name": f.name,
                 "before": SENSITIVE if f.sensitive else f.before,
                 "after": SENSITIVE if f.sensitive else f.after,
                 "forces_replacement": f.forces_replacement}
                for f in change.fields
            ],
            "reasons": list(change.reasons),
            "detail": change.detail,
        },
    }
