"""A run's `arguments` (a list, or a flag map like the SDK's script_params) as the argument list
every role gets. Backend-neutral: each backend says what a datastore input becomes (a local
folder, or `$AZUREML_DATAREFERENCE_<id>` on Azure ML)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from amlctl.runs.definition import DataInputRef, as_data_input

# (hint for the input's id, the input) -> the text that stands in the argument list
InputReference = Callable[[str, DataInputRef], str]


def is_data_input(value: Any) -> bool:
    """True for a datastore input (a DataInputRef, or a model or mapping of that shape)."""
    if isinstance(value, DataInputRef):
        return True
    if hasattr(value, "model_dump"):
        value = value.model_dump()
    return isinstance(value, Mapping) and "datastore" in value and "path" in value


def render_arguments(value: Any, reference: InputReference) -> list[str]:
    """`{--steps: 5, --data: {datastore...}, --flag: null}` -> `--steps 5 --data REF --flag`;
    a list keeps its items, a DataInput in it named after the flag just before it."""
    out: list[str] = []
    if isinstance(value, Mapping):
        for flag, item in value.items():
            out.append(str(flag))
            if item is None:
                continue  # a bare flag
            out.append(reference(str(flag), as_data_input(item)) if is_data_input(item)
                       else str(item))
        return out
    items: Sequence[Any] = value or []
    for position, item in enumerate(items):
        if is_data_input(item):
            previous = items[position - 1] if position else None
            is_flag = (isinstance(previous, str) and previous.startswith("-")
                       and "=" not in previous)
            out.append(reference(previous if is_flag else "input", as_data_input(item)))
        else:
            out.append(str(item))  # as the SDK does with script_params: True -> "True"
    return out
