"""Saved plans (`plan --out FILE`): what was planned, against which live state, for which
backend.

A plan file holds no secret value: secrets appear only as fingerprints. It holds no absolute
path either: the manifest is recorded relative to the folder `plan` ran in, and every path
inside the plan is relative to the manifest's folder, so a plan made in one CI job applies in
another job that checked out the same commit elsewhere (run `apply` from the same folder of
the checkout as `plan`, or pass -f). `apply FILE` re-plans with the same options and refuses
when the backend, the live state or the manifest differ from when it was made.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amlctl.engine.plan import Plan
from amlctl.errors import PlanError, UsageError
from amlctl.render.jsonplan import plan_document

KIND = "amlctl-plan"
MAX_PLAN_BYTES = 256 << 20  # far above any real plan; a bound on what is read


@dataclass(frozen=True)
class SavedPlan:
    """A plan file's contents."""

    manifest: str
    backend: str
    live_fingerprint: str
    desired_fingerprint: str
    targets: list[str]
    replace: list[str]
    destroy: bool
    include_data: bool
    include_workspace: bool
    variables: dict[str, Any]
    document: dict[str, Any]


def save_plan(plan: Plan, path: Path, *, targets: list[str], replace: list[str],
              include_workspace: bool = False, variables: dict[str, Any] | None = None) -> None:
    """Write the plan atomically (a half-written plan file is never left behind)."""
    body = {
        "kind": KIND,
        "manifest": portable_path(Path(plan.manifest)),
        "backend": plan.backend,
        "live_fingerprint": plan.live_fingerprint,
        "desired_fingerprint": plan.desired_fingerprint,
        "targets": targets,
        "replace": replace,
        "destroy": plan.destroy,
        "include_data": plan.include_data,
        "include_workspace": include_workspace,
        "variables": variables or {},
        "plan": plan_document(plan),
    }
    check_destination(path)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(json.dumps(body, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError as err:
        with contextlib.suppress(OSError):
            tmp.unlink()  # nothing left behind
        raise UsageError(f"{path}: cannot write the plan file: {err.strerror or err}") from None


def check_destination(path: Path) -> None:
    """Refuse a plan file path that cannot be one (checked before planning, so a bad
    `--out` costs nothing and leaves nothing)."""
    try:
        if path.is_dir():
            raise UsageError(f"{path}: is a folder; give a file name (e.g. "
                             f"{path / 'plan.json'})")
        if not path.parent.is_dir():
            raise UsageError(f"{path}: no folder {path.parent} to write the plan file in")
    except OSError as err:  # a name too long, a folder we may not look into
        raise UsageError(f"{path}: cannot write the plan file: {err.strerror or err}") from None


def portable_path(manifest: Path, cwd: Path | None = None) -> str:
    """The manifest as seen from the folder `plan` runs in (POSIX, relative), so the same
    checkout layout finds it on another machine; absolute only when it lies outside."""
    full = Path(os.path.abspath(manifest))
    base = Path(os.path.abspath(cwd or Path.cwd()))
    try:
        return full.relative_to(base).as_posix()
    except ValueError:
        return str(full)


def load_plan(path: Path) -> SavedPlan:
    """Read a plan file written by `plan --out`."""
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise UsageError(f"{path}: is a folder, not a plan file")
        if not stat.S_ISREG(mode):  # a fifo would block, a device never end
            raise UsageError(f"{path}: not a regular file, so not a plan file")
        with path.open("rb") as stream:
            raw = stream.read(MAX_PLAN_BYTES + 1)
        if len(raw) > MAX_PLAN_BYTES:
            raise UsageError(f"{path}: larger than {MAX_PLAN_BYTES >> 20} MiB: not a plan file")
        body = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise UsageError(f"{path}: no such plan file") from None
    except OSError as err:
        raise UsageError(f"{path}: cannot read the plan file: {err.strerror or err}") from None
    except (ValueError, RecursionError) as err:
        raise UsageError(f"{path}: not a plan file ({err})") from None
    if not isinstance(body, dict) or body.get("kind") != KIND:
        raise UsageError(f"{path}: not an amlctl plan file")
    _check_fields(path, body)
    return SavedPlan(
        manifest=body["manifest"], backend=body["backend"],
        live_fingerprint=body["live_fingerprint"],
        desired_fingerprint=body["desired_fingerprint"], targets=body["targets"],
        replace=body["replace"], destroy=body["destroy"], include_data=body["include_data"],
        include_workspace=body.get("include_workspace", False),
        variables=body.get("variables", {}), document=body["plan"],
    )


def manifest_of(saved: SavedPlan, plan_file: Path) -> Path:
    """Where the manifest of a saved plan is in this checkout."""
    path = Path(saved.manifest)
    if not path.is_file():
        raise UsageError(f"{plan_file}: the plan was made for the manifest {saved.manifest}, "
                         "which is not here; run apply from the folder plan ran in (e.g. the "
                         "checkout's root), or name the manifest with -f")
    return path


# Each key of a plan file and the type its value must have (optional keys: False).
_FIELDS: dict[str, tuple[type, bool]] = {
    "manifest": (str, True), "backend": (str, True), "live_fingerprint": (str, True),
    "desired_fingerprint": (str, True), "targets": (list, True), "replace": (list, True),
    "destroy": (bool, True), "include_data": (bool, True), "plan": (dict, True),
    "include_workspace": (bool, False), "variables": (dict, False),
}


def _check_fields(path: Path, body: dict[str, Any]) -> None:
    """A plan file edited by hand or cut short: name the first key at fault."""
    for key, (kind, required) in _FIELDS.items():
        if key not in body:
            if required:
                raise UsageError(f"{path}: not a complete plan file: key {key!r} is missing; "
                                 "make it again with `amlctl plan --out`")
            continue
        value = body[key]
        if not isinstance(value, kind) or (kind is list and not all(
                isinstance(item, str) for item in value)):
            what = "a list of strings" if kind is list else f"a {kind.__name__}"
            raise UsageError(f"{path}: key {key!r} must be {what}; make the plan file again "
                             "with `amlctl plan --out`")


def check_current(saved: SavedPlan, fresh: Plan) -> None:
    """Refuse a saved plan whose backend, live state or manifest differ from now."""
    if fresh.backend != saved.backend:
        raise PlanError(f"the saved plan was made for the {saved.backend} backend, not "
                        f"{fresh.backend}; apply it with --backend {saved.backend} or make a "
                        "new plan")
    if fresh.live_fingerprint != saved.live_fingerprint:
        raise PlanError("the saved plan is stale: the live workspace changed since it was made. "
                        "Run `amlctl plan` again.")
    if fresh.desired_fingerprint != saved.desired_fingerprint:
        raise PlanError("the saved plan is stale: the manifest changed since it was made. "
                        "Run `amlctl plan` again.")
    # Same manifest, same live state: only the local files of an upload can differ still.
    now = _upload_files(plan_document(fresh))
    try:
        then = _upload_files(saved.document)
    except (AttributeError, KeyError, TypeError):
        raise UsageError("the saved plan file is damaged (its 'plan' is not what `amlctl plan "
                         "--out` writes); make it again with `amlctl plan --out`") from None
    for address, files in then.items():
        if now.get(address) != files:
            raise PlanError(f"the saved plan is stale: the local files of {address} changed "
                            "since it was made. Run `amlctl plan` again.")


def _upload_files(document: dict[str, Any]) -> dict[str, list[tuple[str, str, int]]]:
    """Per upload, the files a plan document sends or deletes: (what, path, size)."""
    out: dict[str, list[tuple[str, str, int]]] = {}
    for change in document.get("resource_changes", []):
        if change.get("type") != "upload":
            continue
        detail = change["change"].get("detail") or {}
        out[change["address"]] = sorted(
            (what, entry["path"], entry["size"])
            for what in ("add", "change", "delete") for entry in detail.get(what) or [])
    return out
