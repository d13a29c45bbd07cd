"""Make a plan: gather desired and live state, diff, limit to targets, fingerprint."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from amlctl.engine import address as addr
from amlctl.engine.desired import Desired, desired_state, secret_env_fingerprints
from amlctl.engine.differ import DiffInput, diff, secret_fields
from amlctl.engine.graph import dependency_graph
from amlctl.engine.plan import Action, Change, Plan
from amlctl.engine.state import StateStore, manifest_origin
from amlctl.errors import PlanError, StateError, UsageError
from amlctl.manifest.loader import LoadedManifest
from amlctl.providers.base import LiveObject, Provider

STATE_DIR_NAME = ".amlctl"


@dataclass(eq=False)  # one per command, never compared: no __eq__ compiled at start
class Context:
    """One manifest bound to its backend: what every engine operation works on."""

    loaded: LoadedManifest
    provider: Provider
    state: StateStore
    state_dir: Path
    backend: str

    @property
    def stack(self) -> str:
        """The stack name (owner tag value)."""
        return self.loaded.manifest.name

    def close(self) -> None:
        """Release the provider and state connections."""
        self.provider.close()
        self.state.close()

    def desired(self) -> dict[str, Desired]:
        """The manifest's resources, secrets fingerprinted with the stack's key (which the
        provider's read-back uses too)."""
        key = self.state.fingerprint_key
        self.provider.fingerprint_key = key
        return desired_state(self.loaded, key)


def state_dir_for(loaded: LoadedManifest) -> Path:
    """`AMLCTL_HOME`, else `.amlctl/` beside the manifest."""
    home = os.environ.get("AMLCTL_HOME")
    return Path(home) if home else loaded.root / STATE_DIR_NAME


def open_context(loaded: LoadedManifest, backend: str | None = None, *,
                 check_identity: bool = True) -> Context:
    """Bind a loaded manifest to its backend (--backend/AMLCTL_BACKEND over `backend:`) and
    its state (refused when the state belongs to another manifest, unless told not to
    check: `state rebind`)."""
    from amlctl.providers import get_provider

    chosen = backend or loaded.manifest.backend
    state_dir = state_dir_for(loaded)
    workspace = loaded.manifest.workspace.model_dump()
    provider = get_provider(chosen, workspace, loaded.manifest.name, state_dir)
    state_block = loaded.manifest.state
    provider.state_config = state_block.model_dump() if state_block is not None else None
    try:
        state = provider.state_store()
    except BaseException:
        provider.close()
        raise
    return bind_state(Context(loaded, provider, state, state_dir, chosen), check_identity)


def bind_state(ctx: Context, check_identity: bool = True) -> Context:
    """Check the state belongs to this manifest and share its fingerprint key."""
    try:
        if check_identity:
            ctx.state.bind(manifest_origin(ctx.loaded.path))
        ctx.provider.fingerprint_key = ctx.state.fingerprint_key
    except BaseException:
        ctx.close()
        raise
    return ctx


def make_plan(
    ctx: Context,
    *,
    targets: Iterable[str] = (),
    replace_addresses: Iterable[str] = (),
    include_data: bool = False,
) -> Plan:
    """What apply would change to make the workspace match the manifest.

    An upload removed from the manifest is no longer tracked, but its files stay in the
    datastore (as `destroy` keeps them) unless `include_data`.
    """
    desired = ctx.desired()
    ctx.provider.use_credentials({d.name: d.secrets for d in desired.values()
                                  if d.kind == "datastore" and d.secrets})
    replace_set = frozenset(_check_addresses(replace_addresses, desired, "--replace"))
    live = ctx.provider.read_all()
    # A target may also be a live object gone from the manifest (an orphan to prune).
    targets = _check_addresses(targets, desired, "--target", _owned(ctx, live))
    runs = {
        a: ctx.provider.list_runs(experiment=d.attrs["experiment"], spec_hash=d.attrs["spec_hash"])
        for a, d in desired.items() if d.kind == "run"
    }
    uploads = _plan_uploads(ctx, [d for d in desired.values() if d.kind == "upload"],
                            resend=replace_set)
    applied = ctx.state.applied()
    _check_not_lost(ctx, applied, live)
    changes, drift = diff(desired, live, DiffInput(
        stack=ctx.stack, updatable=ctx.provider.updatable_fields, runs=runs, uploads=uploads,
        replace=replace_set, applied=applied,
    ))
    if targets:
        keep = _with_dependencies(targets, desired)
        changes = [c for c in changes if c.address in keep]
        drift = [d for d in drift if d.address in keep]
    _preflight(ctx, changes)
    changes = [_upload_data_reason(c, include_data) for c in changes]
    changes = [_with_notes(ctx, c) for c in changes]
    changes = mark_interrupted_runs(ctx, changes)
    return Plan(
        stack=ctx.stack, backend=ctx.backend, manifest=str(ctx.loaded.path),
        changes=tuple(changes), drift=tuple(drift),
        edges=dependency_graph(desired).restricted(c.address for c in changes).edges,
        live_fingerprint=_live_fingerprint(live, runs, uploads),
        desired_fingerprint=_desired_fingerprint(desired),
        include_data=include_data,
        notes=_rotated_run_secrets(ctx, desired, applied, changes),
        upload_plans=uploads,
    )


def _upload_data_reason(change: Change, include_data: bool) -> Change:
    """Say what becomes of the files of an upload removed from the manifest."""
    if change.kind != "upload" or change.action is not Action.DELETE:
        return change
    where = change.before or {}
    if include_data:
        reason = "removed from the manifest: its files are deleted too (--include-data)"
    else:
        reason = (f"removed from the manifest: its files stay in datastore "
                  f"{where.get('datastore')!r} under {where.get('target_path')!r}; pass "
                  "--include-data to delete them")
    return replace(change, reasons=(*change.reasons, reason))


def make_destroy_plan(ctx: Context, *, include_data: bool = False,
                      include_workspace: bool = False) -> Plan:
    """Delete everything this stack owns, in reverse dependency order."""
    desired = ctx.desired()
    live = ctx.provider.read_all()
    changes: list[Change] = []
    # Every active run carrying this stack's tag is canceled, also those of runs no longer
    # in the manifest or not in this runner's records (newest first, one change per name).
    active: dict[str, list[Any]] = {}
    for run in ctx.provider.list_runs():
        if run.active:
            active.setdefault(run.name or run.id, []).append(run)
    for name, found in active.items():
        newest = found[0]
        reason = "active run is canceled" if len(found) == 1 else \
            f"{len(found)} active runs are canceled"
        changes.append(Change(addr.make("run", name), "run", name, Action.DELETE,
                              {"run_id": newest.id, "status": newest.status}, None,
                              reasons=(reason,),
                              detail={"run_id": newest.id, "run_ids": [r.id for r in found],
                                      "cancel": True}))
    for address in sorted(live, key=addr.sort_key, reverse=True):
        obj = live[address]
        kind = addr.kind_of(address)
        if obj.owner != ctx.stack or kind == "run":
            continue
        if kind == "upload" and not include_data:
            continue
        if kind == "workspace" and not include_workspace:
            continue
        name = addr.Address.parse(address).name
        reasons: tuple[str, ...] = ()
        if kind == "upload":
            reasons = ("uploaded files are deleted (--include-data)",)
        elif kind == "workspace" and not include_data:
            reasons = ("datastore contents are kept; --include-data deletes them too",)
        changes.append(Change(address, kind, name or obj.attrs.get("name", ""), Action.DELETE,
                              obj.attrs, None, reasons=reasons,
                              sensitive_fields=secret_fields(obj.attrs)))
    changes = mark_interrupted_runs(ctx, changes)
    protected = [c.address for c in changes
                 if c.address in desired and desired[c.address].prevent_destroy]
    if protected:
        raise PlanError(f"prevent_destroy is set on {', '.join(protected)}; destroy refused. "
                        "Remove prevent_destroy from the manifest first if this is intended.")
    edges = dependency_graph(desired).restricted(c.address for c in changes).edges
    return Plan(stack=ctx.stack, backend=ctx.backend, manifest=str(ctx.loaded.path),
                changes=tuple(changes), edges=edges,
                live_fingerprint=_live_fingerprint(live, {}, {}),
                desired_fingerprint="", destroy=True, include_data=include_data)


def mark_interrupted_runs(ctx: Context, changes: list[Change]) -> list[Change]:
    """Name, on each cluster the plan replaces or deletes, the queued or running runs on it:
    they are cancelled or lose their compute, so apply asks before (see the CLI)."""
    doomed = {c.name for c in changes
              if c.kind == "compute" and c.action in (Action.REPLACE, Action.DELETE)}
    if not doomed:
        return changes
    on: dict[str, list[dict[str, Any]]] = {}
    for run in ctx.provider.list_runs():
        if run.active and run.compute in doomed:
            on.setdefault(run.compute, []).append(
                {"id": run.id, "name": run.name, "status": run.status, "compute": run.compute})
    out = []
    for change in changes:
        runs = on.get(change.name) if change.kind == "compute" else None
        if runs and change.action in (Action.REPLACE, Action.DELETE):
            listed = ", ".join(f"{r['id']} ({r['name']}, {r['status']})" for r in runs)
            change = dataclasses.replace(
                change, reasons=(*change.reasons, f"active runs on it are cancelled or lose "
                                 f"their compute: {listed}"),
                detail={**change.detail, "interrupted_runs": runs})
        out.append(change)
    return out


def _check_not_lost(ctx: Context, applied: dict[str, Any], live: dict[str, LiveObject]
                    ) -> None:
    """Stop when the state records an applied workspace the backend no longer has: its data
    was lost (a deleted local state.db, a workspace deleted outside amlctl), and planning on
    would recreate everything and resubmit every run."""
    if "workspace" in applied and "workspace" not in live:
        raise StateError(
            f"the state ({ctx.state.location}) records {len(applied)} applied resources of "
            f"stack {ctx.stack!r}, but the workspace {ctx.loaded.manifest.workspace.name!r} "
            "does not exist: it was deleted outside amlctl, or its backend data was lost. "
            "Applying now would recreate everything and resubmit every run. If that is what "
            "you want, run `amlctl state forget` (it drops the applied record, nothing else), "
            "then plan again.")


def _plan_uploads(ctx: Context, uploads: list[Desired], resend: frozenset[str] = frozenset()
                  ) -> dict[str, Any]:
    """SyncPlans of every upload, through one hash cache (opening one per upload dominated
    the plan of a large stack). Uploads in `resend` (--replace) send every file again."""
    if not uploads:
        return {}
    from amlctl.uploads import HashCache

    with HashCache(hash_cache_path(ctx)) as cache:
        return {want.address: plan_upload(ctx, want, cache, resend_all=want.address in resend)
                for want in uploads}


def _rotated_run_secrets(ctx: Context, desired: dict[str, Desired],
                         applied: dict[str, Any], changes: list[Change]) -> tuple[str, ...]:
    """Secret env vars of runs that stay as they are whose value differs from the last
    submission's (keyed fingerprints in the state): nothing to apply, the next submission
    uses the new value. A run submitted before amlctl recorded them shows nothing."""
    acting = {c.address for c in changes if c.action is not Action.NOOP}
    notes = []
    for address, want in desired.items():
        recorded = (applied.get(address) or {}).get("env_secrets")
        if want.kind != "run" or address in acting or not isinstance(recorded, dict):
            continue
        now = secret_env_fingerprints(want.secrets, ctx.state.fingerprint_key)
        for name in sorted(set(now) | set(recorded)):
            if now.get(name) != recorded.get(name):
                notes.append(f"{address}: secret env var {name} changed (sensitive): takes "
                             "effect on the next submission")
    return tuple(notes)


def _with_notes(ctx: Context, change: Change) -> Change:
    """A create with what the backend has to say about it added to its reasons."""
    if change.action is not Action.CREATE or change.after is None:
        return change
    notes = ctx.provider.create_notes(change.address, change.after)
    return dataclasses.replace(change, reasons=(*change.reasons, *notes)) if notes else change


def _preflight(ctx: Context, changes: list[Change]) -> None:
    """Fail the plan on what the service would refuse mid-apply (region sizes, quota)."""
    problems = [
        f"{change.address}: {problem}"
        for change in changes
        if change.action in (Action.CREATE, Action.REPLACE) and change.after is not None
        for problem in ctx.provider.preflight(change.address, change.after)
    ]
    if problems:
        raise PlanError("the plan cannot be applied:\n  " + "\n  ".join(problems))


def plan_upload(ctx: Context, want: Desired, cache: Any = None, *, resend_all: bool = False
                ) -> Any:
    """The file-level difference of one upload (a SyncPlan); `resend_all`: every file."""
    from amlctl.uploads import HashCache, plan_sync

    if cache is None:
        with HashCache(hash_cache_path(ctx)) as own_cache:
            return plan_upload(ctx, want, own_cache, resend_all=resend_all)
    store = ctx.provider.file_store(want.attrs["datastore"], want.attrs["target_path"])
    return plan_sync(
        ctx.loaded.root / want.attrs["src_dir"],
        store,  # listed (or fingerprinted) on a thread while src_dir is scanned
        exclude=want.attrs["exclude"],
        delete_extra=want.attrs["delete_extra"],
        cache=cache,
        resend_all=resend_all,
        never=(ctx.state_dir, ctx.loaded.root / STATE_DIR_NAME),  # amlctl's own files
    )


def hash_cache_path(ctx: Context) -> Path:
    """Where local file hashes are remembered between runs (size+mtime+inode keyed)."""
    return ctx.state_dir / "hashcache.db"


def _owned(ctx: Context, live: dict[str, LiveObject]) -> set[str]:
    """Live addresses this stack owns."""
    return {a for a, obj in live.items() if obj.owner == ctx.stack}


def _check_addresses(addresses: Iterable[str], desired: dict[str, Desired], flag: str,
                     also: set[str] | frozenset[str] = frozenset()) -> list[str]:
    out = []
    for address in addresses:
        addr.split(address)
        if address not in desired and address not in also:
            where = "in the manifest or owned by this stack" if also else "in the manifest"
            raise UsageError(f"{flag} {address}: no such resource {where}")
        out.append(address)
    return out


def _with_dependencies(targets: Iterable[str], desired: dict[str, Desired]) -> set[str]:
    keep: set[str] = set()
    stack = list(targets)
    while stack:
        current = stack.pop()
        if current in keep:
            continue
        keep.add(current)
        if current in desired:
            stack.extend(desired[current].deps)
    return keep


def _desired_fingerprint(desired: dict[str, Desired]) -> str:
    """Of the desired state, independent of the fingerprint key (a plan made before the
    state existed is applied with the key the first apply creates)."""
    def masked(value: Any) -> Any:
        if isinstance(value, str) and value.startswith("sha256:"):
            return "(sensitive)"
        if isinstance(value, dict):
            return {k: masked(v) for k, v in value.items()}
        if isinstance(value, list):
            return [masked(v) for v in value]
        return value

    secret_digest = hashlib.sha256(json.dumps(
        {a: d.secrets for a, d in desired.items()}, sort_keys=True).encode()).hexdigest()
    return _fingerprint({"attrs": {a: masked(d.attrs) for a, d in desired.items()},
                         "secrets": secret_digest})


def _fingerprint(value: Any) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _live_fingerprint(live: dict[str, LiveObject], runs: dict[str, Any],
                      uploads: dict[str, Any]) -> str:
    return _fingerprint({
        "live": {a: [o.attrs, o.owner] for a, o in live.items()},
        "runs": {a: [r.id for r in found] for a, found in runs.items()},
        "uploads": {a: p.remote_digest for a, p in uploads.items()},
    })

