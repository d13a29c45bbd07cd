"""Desired vs live -> Plan. Pure: every input is gathered beforehand (planner.py)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from amlctl.engine.address import kind_of, sort_key
from amlctl.engine.desired import Desired
from amlctl.engine.plan import Action, Change, Drift, FieldChange
from amlctl.errors import PlanError
from amlctl.providers.base import LiveObject, RunInfo
from amlctl.providers.resources import KIND_BY_NAME, PRUNABLE, Address

# Workspace identity: a change here means another workspace, never an in-place edit.
WORKSPACE_IDENTITY = ("subscription_id", "resource_group", "location")


# An argument bundle, never compared or shown: no generated __eq__/__hash__/__repr__ to
# compile on every start.
@dataclass(frozen=True, eq=False, repr=False)
class DiffInput:
    """What the differ needs besides desired and live state."""

    stack: str
    updatable: Callable[[str], frozenset[str]]
    runs: Mapping[str, Sequence[RunInfo]] = field(default_factory=dict)  # address -> matches
    uploads: Mapping[str, Any] = field(default_factory=dict)  # address -> SyncPlan
    replace: frozenset[str] = frozenset()
    applied: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # last applied attrs


def diff(desired: Mapping[str, Desired], live: Mapping[str, LiveObject], ctx: DiffInput
         ) -> tuple[list[Change], list[Drift]]:
    """Changes for every desired address plus prunes, in dependency order; and drift."""
    changes: list[Change] = []
    for address in sorted(desired, key=sort_key):
        changes.append(_change(desired[address], live.get(address), ctx))
    for address in sorted(live, key=sort_key):
        obj = live[address]
        if address in desired or kind_of(address) not in PRUNABLE or obj.owner != ctx.stack:
            continue
        where = Address.parse(address)
        changes.append(Change(address, where.kind, where.name, Action.DELETE, obj.attrs, None,
                              reasons=("not in the manifest any more; owned by this stack",),
                              sensitive_fields=secret_fields(obj.attrs)))
    drift = [d for d in (_drift(a, live.get(a), ctx.applied.get(a)) for a in desired) if d]
    _check_prevent_destroy(changes, desired)
    return changes, drift


def _change(want: Desired, have: LiveObject | None, ctx: DiffInput) -> Change:
    if want.kind == "run":
        return _run_change(want, ctx)
    if want.kind == "upload":
        return _upload_change(want, have, ctx)
    if have is None:
        return Change(want.address, want.kind, want.name, Action.CREATE, None, want.attrs,
                      sensitive_fields=_sensitive(want))
    if have.owner != ctx.stack:
        who = f"stack {have.owner!r}" if have.owner else "something other than amlctl"
        raise PlanError(
            f"{want.address} already exists in the workspace, created by {who}; amlctl never "
            f"touches what it does not own. Adopt it with `amlctl import {want.address}` or "
            "rename it in the manifest."
        )
    fields = _field_changes(want, have, ctx.updatable(want.kind), ctx.applied.get(want.address))
    if want.kind == "workspace":
        _refuse_workspace_move(fields)
    if want.address in ctx.replace:
        return Change(want.address, want.kind, want.name, Action.REPLACE, have.attrs, want.attrs,
                      fields, ("replacement requested with --replace",),
                      sensitive_fields=_sensitive(want))
    if not fields:
        return Change(want.address, want.kind, want.name, Action.NOOP, have.attrs, want.attrs,
                      sensitive_fields=_sensitive(want))
    forced = [f.name for f in fields if f.forces_replacement]
    if forced:
        return Change(want.address, want.kind, want.name, Action.REPLACE, have.attrs, want.attrs,
                      fields, tuple(f"{name} cannot change in place" for name in forced),
                      sensitive_fields=_sensitive(want))
    return Change(want.address, want.kind, want.name, Action.UPDATE, have.attrs, want.attrs,
                  fields, sensitive_fields=_sensitive(want))


def _field_changes(want: Desired, have: LiveObject, updatable: frozenset[str],
                   applied: dict[str, Any] | None) -> tuple[FieldChange, ...]:
    out = []
    sensitive = _sensitive(want) | secret_fields(have.attrs)
    for key, value in want.attrs.items():
        before = have.attrs.get(key)
        if key in sensitive and before is None and (
                applied is None or key not in applied or applied.get(key) == value):
            # A write-only secret the service cannot show: a change only when amlctl last set
            # it to something else (or to nothing). Never applied (imported): cannot tell.
            continue
        if _normal(before, key) != _normal(value, key):
            out.append(FieldChange(key, before, value, key not in updatable, key in sensitive))
    return tuple(out)


# Azure compares these without regard to case (STANDARD_NC6 is Standard_NC6) and may return
# them in its own spelling, so a different case alone is not a change.
CASE_INSENSITIVE = frozenset({"vm_size", "location", "vm_priority"})


def _normal(value: Any, key: str = "") -> Any:
    """Treat missing, empty map and empty list alike (services drop empty tags)."""
    if key in CASE_INSENSITIVE and isinstance(value, str):
        return value.lower()
    return None if value in ({}, [], None) else value


def _refuse_workspace_move(fields: tuple[FieldChange, ...]) -> None:
    moved = [f for f in fields if f.name in WORKSPACE_IDENTITY]
    if moved:
        what = ", ".join(f"{f.name} {f.before!r} -> {f.after!r}" for f in moved)
        raise PlanError(
            f"workspace: refusing to change {what}. A workspace cannot move; amlctl never "
            "replaces one silently. Give the new workspace another name, or destroy with "
            "--include-workspace first."
        )


def _upload_change(want: Desired, have: LiveObject | None, ctx: DiffInput) -> Change:
    sync = ctx.uploads.get(want.address)
    detail = sync.to_dict() if sync is not None else {}
    files_differ = bool(detail.get("add") or detail.get("change") or detail.get("delete"))
    if have is None:
        action = Action.CREATE
    elif have.owner != ctx.stack:
        raise PlanError(f"{want.address} is recorded by another stack ({have.owner!r})")
    elif files_differ or _normal(have.attrs.get("target_path")) != want.attrs["target_path"] \
            or have.attrs.get("datastore") != want.attrs["datastore"]:
        action = Action.UPDATE
    else:
        action = Action.NOOP
    reasons: tuple[str, ...] = ()
    if want.address in ctx.replace:
        # Data is not deleted and re-created: every file is sent again over what is there.
        detail["resend"] = True
        reasons = ("every file is sent again, as --replace asks",)
        action = Action.UPDATE if action is Action.NOOP else action
    before = have.attrs if have else None
    return Change(want.address, want.kind, want.name, action, before, want.attrs,
                  reasons=reasons, detail=detail)


def _run_change(want: Desired, ctx: DiffInput) -> Change:
    matches = list(ctx.runs.get(want.address, ()))
    if matches and want.address not in ctx.replace:
        latest = matches[0]
        return Change(want.address, "run", want.name, Action.NOOP, want.attrs, want.attrs,
                      detail={"run_id": latest.id, "status": latest.status})
    reason = ("resubmission requested with --replace",) if matches else (
        "no run with this definition (spec hash) in the experiment",)
    detail: dict[str, Any] = {"submit": True}
    if matches:
        detail["supersedes"] = matches[0].id  # gives the resubmission its own run id
    return Change(want.address, "run", want.name, Action.CREATE, None, want.attrs,
                  reasons=reason, detail=detail)


def _drift(address: str, have: LiveObject | None, applied: dict[str, Any] | None
           ) -> Drift | None:
    if have is None or applied is None or not KIND_BY_NAME[kind_of(address)].drift:
        return None
    secret = secret_fields(applied) | secret_fields(have.attrs)
    fields = tuple(
        FieldChange(key, before, have.attrs.get(key), sensitive=key in secret)
        for key, before in applied.items()
        if key in have.attrs and _normal(have.attrs.get(key), key) != _normal(before, key)
        # a write-only secret the service cannot show has not drifted
        and not (key in secret and have.attrs.get(key) is None)
    )
    return Drift(address, fields) if fields else None


def _sensitive(want: Desired) -> frozenset[str]:
    return frozenset(key.split(".", 1)[0] for key in want.secrets)


def secret_fields(attrs: Mapping[str, Any]) -> frozenset[str]:
    """Fields of a live object holding a secret's fingerprint: redacted like secrets."""
    return frozenset(k for k, v in attrs.items() if isinstance(v, str) and v.startswith("sha256:"))


def _check_prevent_destroy(changes: list[Change], desired: Mapping[str, Desired]) -> None:
    blocked = [
        c for c in changes
        if c.action in (Action.DELETE, Action.REPLACE)
        and c.address in desired and desired[c.address].prevent_destroy
    ]
    if blocked:
        lines = "; ".join(f"{c.address} would be "
                          f"{'replaced' if c.action is Action.REPLACE else 'destroyed'}"
                          for c in blocked)
        raise PlanError(f"prevent_destroy is set: {lines}. Remove prevent_destroy from the "
                        "manifest first if this is really intended.")
