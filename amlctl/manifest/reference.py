"""The manifest field reference (docs/manifest.md), generated from the models' descriptions."""

from __future__ import annotations

import json
import types
import typing
from typing import Any

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

HEADER = """# Manifest reference

Generated from the models by `make schema` (do not edit by hand). Every key below is checked;
unknown keys are errors with a "did you mean" hint. Secrets are written as
`"{{ secret_env('NAME') }}"` and shown as `(sensitive)` everywhere.
"""


def _type_name(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return _type_name(args[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in args)
    if origin is typing.Literal:
        return " | ".join(str(a) for a in args)
    if origin in (list, tuple):
        return f"list of {_type_name(args[0])}" if args else "list"
    if origin is dict:
        return f"map of {_type_name(args[1])}" if args else "map"
    if annotation is type(None):
        return "null"
    if isinstance(annotation, type):
        return {"str": "string", "int": "integer", "bool": "boolean", "float": "number",
                "SecretStr": "secret"}.get(annotation.__name__, annotation.__name__)
    return str(annotation)


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []

    def visit(annotation: Any) -> None:
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if annotation not in seen:
                seen.append(annotation)
                for f in annotation.model_fields.values():
                    visit(f.annotation)
            return
        for arg in typing.get_args(annotation):
            visit(arg)

    visit(root)
    return seen


def reference_markdown() -> str:
    """Markdown tables, one per model, in the order a manifest reads."""
    from amlctl.manifest.models import Manifest

    out = [HEADER]
    for model in _models(Manifest):
        out.append(f"## {model.__name__}\n\n{(model.__doc__ or '').strip()}\n")
        out.append("| field | type | default | description |\n|---|---|---|---|")
        for name, f in model.model_fields.items():
            if f.is_required():
                default = "required"
            elif f.default_factory is not None:
                default = "see type"
            elif f.default is PydanticUndefined:
                default = ""
            else:
                default = f"`{json.dumps(f.default)}`" if f.default not in ({}, []) \
                    else "empty"
            description = (f.description or "").replace("|", "\\|")
            # metadata may name the type itself (a choice read from a registry when used)
            named = [m.reference_type() for m in f.metadata if hasattr(m, "reference_type")]
            type_name = (named[0] if named else _type_name(f.annotation)).replace("|", "\\|")
            out.append(f"| `{name}` | {type_name} | {default} | {description} |")
        out.append("")
    return "\n".join(out)
