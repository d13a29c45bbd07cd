"""Make a plan: gather desired and live state, diff, limit to targets, fingerprint."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from amlctl.engine import address as addr
from amlctl.engine.desired import Desired, desired_state
from amlctl.engine.differ import DiffInput, diff, secret_fields
from amlctl.engine.plan import Action, Change, Plan
from amlctl.engine.state import StateStore, manifest_origin
from amlctl.errors import PlanError, StateError, UsageError
from amlctl.manifest.loader import LoadedManifest
from amlctl.providers.base import LiveObject, Provider

STATE_DIR_NAME = ".amlctl"


@dataclass
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
    targets = _check_addresses(targets, desired, "--target")
    replace_set = frozenset(_check_addresses(replace_addresses, desired, "--replace"))
    live = ctx.provider.read_all()
    runs = {
        a: ctx.provider.list_runs(experiment=d.attrs["experiment"], spec_hash=d.attrs["spec_hash"])
        for a, d in desired.items() if d.kind == "run"
    }
    uploads = _plan_uploads(ctx, [d for d in desired.values() if d.kind == "upload"])
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
    return Plan(
        stack=ctx.stack, backend=ctx.backend, manifest=str(ctx.loaded.path),
        changes=tuple(changes), drift=tuple(drift),
        live_fingerprint=_live_fingerprint(live, runs, uploads),
        desired_fingerprint=_desired_fingerprint(desired),
        include_data=include_data,
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
    for run in ctx.provider.list_runs():
        if run.active and addr.make("run", run.name) in desired:
            changes.append(Change(addr.make("run", run.name), "run", run.name, Action.DELETE,
                                  {"run_id": run.id, "status": run.status}, None,
                                  reasons=("active run is canceled",),
                                  detail={"run_id": run.id, "cancel": True}))
    for address in sorted(live, key=addr.sort_key, reverse=True):
        obj = live[address]
        kind = addr.kind_of(address)
        if obj.owner != ctx.stack or kind == "run":
            continue
        if kind == "upload" and not include_data:
            continue
        if kind == "workspace" and not include_workspace:
            continue
        _, _, name = address.partition(".")
        reasons: tuple[str, ...] = ()
        if kind == "upload":
            reasons = ("uploaded files are deleted (--include-data)",)
        elif kind == "workspace" and not include_data:
            reasons = ("datastore contents are kept; --include-data deletes them too",)
        changes.append(Change(address, kind, name or obj.attrs.get("name", ""), Action.DELETE,
                              obj.attrs, None, reasons=reasons,
                              sensitive_fields=secret_fields(obj.attrs)))
    protected = [c.address for c in changes
                 if c.address in desired and desired[c.address].prevent_destroy]
    if protected:
        raise PlanError(f"prevent_destroy is set on {', '.join(protected)}; destroy refused. "
                        "Remove prevent_destroy from the manifest first if this is intended.")
    return Plan(stack=ctx.stack, backend=ctx.backend, manifest=str(ctx.loaded.path),
                changes=tuple(changes), live_fingerprint=_live_fingerprint(live, {}, {}),
                desired_fingerprint="", destroy=True, include_data=include_data)


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


def _plan_uploads(ctx: Context, uploads: list[Desired]) -> dict[str, Any]:
    """SyncPlans of every upload, through one hash cache (opening one per upload dominated
    the plan of a large stack)."""
    if not uploads:
        return {}
    from amlctl.uploads import HashCache

    with HashCache(hash_cache_path(ctx)) as cache:
        return {want.address: plan_upload(ctx, want, cache) for want in uploads}


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


def plan_upload(ctx: Context, want: Desired, cache: Any = None) -> Any:
    """The file-level difference of one upload (a SyncPlan)."""
    from amlctl.uploads import HashCache, plan_sync

    if cache is None:
        with HashCache(hash_cache_path(ctx)) as own_cache:
            return plan_upload(ctx, want, own_cache)
    store = ctx.provider.file_store(want.attrs["datastore"], want.attrs["target_path"])
    return plan_sync(
        Path(want.attrs["src_dir"]),
        store.list_files(),
        exclude=want.attrs["exclude"],
        delete_extra=want.attrs["delete_extra"],
        cache=cache,
        never=(ctx.state_dir, ctx.loaded.root / STATE_DIR_NAME),  # amlctl's own files
    )


def hash_cache_path(ctx: Context) -> Path:
    """Where local file hashes are remembered between runs (size+mtime+inode keyed)."""
    return ctx.state_dir / "hashcache.db"


def _check_addresses(addresses: Iterable[str], desired: dict[str, Desired], flag: str
                     ) -> list[str]:
    out = []
    for address in addresses:
        addr.split(address)
        if address not in desired:
            raise UsageError(f"{flag} {address}: no such resource in the manifest")
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

