"""The plan as text for people, shaped like Terraform's."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from amlctl.engine.plan import Action, Change, Plan
from amlctl.render.values import human_bytes, show

Style = Callable[[str, str], str]  # (text, color) -> text

LEGEND = ("Symbols: + create, ~ update in place, -/+ replace (delete, then create), "
          "- destroy")
COLORS = {Action.CREATE: "green", Action.UPDATE: "yellow", Action.REPLACE: "magenta",
          Action.DELETE: "red"}
MAX_FILES_LISTED = 10


def plain(text: str, _color: str) -> str:
    """No styling."""
    return text


def render_plan(plan: Plan, style: Style = plain) -> str:
    """Drift, then the changes by address with field-level before -> after, then the summary."""
    lines: list[str] = []
    if plan.drift:
        lines.append("Note: objects changed outside amlctl since it last applied them:")
        lines.append("")
        for drift in plan.drift:
            lines.append(f"  {style('~', 'yellow')} {drift.address}")
            for f in drift.fields:
                lines.append(f"      ~ {f.name}: {show(f.before, f.sensitive)} -> "
                             f"{show(f.after, f.sensitive)}")
        lines.append("")
    # sensitive changes that need no action (a rotated run secret): named, never shown
    lines.extend(f"Note: {note}" for note in plan.notes)
    if plan.notes:
        lines.append("")
    actionable = plan.actionable
    if not actionable:
        lines.append("No changes. The workspace matches the manifest.")
        return "\n".join(lines) + "\n"
    lines.append(LEGEND)
    lines.append("")
    lines.append("amlctl will perform the following actions:")
    lines.append("")
    for change in actionable:
        lines.extend(_change_lines(change, style))
        lines.append("")
    counts = plan.counts()
    lines.append(style(f"Plan: {counts['add']} to add, {counts['change']} to change, "
                       f"{counts['destroy']} to destroy.", "bold"))
    return "\n".join(lines) + "\n"


def _headline(change: Change) -> str:
    if change.kind == "run":
        if change.action is Action.DELETE:
            return f"{change.address} ({change.detail.get('run_id')}) will be canceled"
        return f"{change.address} will be submitted"
    return {
        Action.CREATE: f"{change.address} will be created",
        Action.UPDATE: f"{change.address} will be updated in place",
        Action.REPLACE: f"{change.address} must be replaced",
        Action.DELETE: f"{change.address} will be destroyed",
    }[change.action]


def _change_lines(change: Change, style: Style) -> list[str]:
    symbol = change.action.value
    color = COLORS.get(change.action, "")
    out = [f"  # {_headline(change)}"]
    out.extend(f"  # ({reason})" for reason in change.reasons)
    out.append(f"{style(symbol.rjust(3), color)} {change.address}")
    if change.kind == "upload":
        out.extend(_upload_lines(change))
        return out
    if change.action is Action.CREATE:
        for key, value in (change.after or {}).items():
            if value in (None, {}, []):
                continue
            sensitive = key in change.sensitive_fields
            out.append(f"      {style('+', 'green')} {key}: {show(value, sensitive)}")
    elif change.action is Action.DELETE:
        for key, value in (change.before or {}).items():
            if value in (None, {}, []):
                continue
            sensitive = key in change.sensitive_fields or str(value).startswith("sha256:")
            out.append(f"      {style('-', 'red')} {key}: {show(value, sensitive)}")
    else:
        for f in change.fields:
            note = "  # forces replacement" if f.forces_replacement and \
                change.action is Action.REPLACE else ""
            out.append(f"      {style('~', 'yellow')} {f.name}: {show(f.before, f.sensitive)}"
                       f" -> {show(f.after, f.sensitive)}{style(note, 'magenta')}")
    return out


def _upload_lines(change: Change) -> list[str]:
    detail: dict[str, Any] = change.detail
    if change.action is Action.DELETE:
        return []  # its reasons say whether its files go too (--include-data) or stay
    out = [f"      datastore: {show((change.after or {}).get('datastore'))}, target_path: "
           f"{show((change.after or {}).get('target_path'))}"]
    for key, symbol in (("add", "+"), ("change", "~"), ("delete", "-")):
        entries = detail.get(key) or []
        for entry in entries[:MAX_FILES_LISTED]:
            path, size = _file_entry(entry)
            out.append(f"      {symbol} {path} ({human_bytes(size)})")
        if len(entries) > MAX_FILES_LISTED:
            out.append(f"      {symbol} ... and {len(entries) - MAX_FILES_LISTED} more")
    counts = {k: len(detail.get(k) or []) for k in ("add", "change", "delete")}
    out.append(f"      files: {counts['add']} to add, {counts['change']} to change, "
               f"{counts['delete']} to delete; {human_bytes(detail.get('bytes_to_send', 0))} "
               "to send")
    return out


def _file_entry(entry: Any) -> tuple[str, int]:
    if isinstance(entry, dict):
        return str(entry.get("path")), int(entry.get("size", 0))
    if isinstance(entry, list | tuple):
        return str(entry[0]), int(entry[1]) if len(entry) > 1 else 0
    return str(entry), 0
