"""Apply a plan: primitive steps (create, update, delete, sync, submit, cancel) in dependency
order, independent steps in parallel, each journalled begun/done/failed.

A replace is a delete and a create around the same address, so recovery after a crash only
reasons about primitive steps: every step is idempotent (create of an existing object updates
it, delete of a missing one is a no-op), and run submission is repaired by the provider.

What happens is told to a view as typed events (engine/events.py); nothing here builds text.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

# The step events are loaded on their first use (events.py): not by an apply with nothing to do.
from amlctl.engine import events
from amlctl.engine.address import kind_of
from amlctl.engine.desired import Desired, run_request, secret_env_fingerprints
from amlctl.engine.events import ApplyView, NullView
from amlctl.engine.plan import Action, Change, Plan
from amlctl.engine.planner import Context
from amlctl.errors import AmlctlError, ProviderError
from amlctl.providers.base import RunInfo

if TYPE_CHECKING:
    from amlctl.engine.events import Event, StepOutcome, Synced

PARALLELISM = 4


@dataclass
class ApplyResult:
    """What an apply did."""

    done: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    runs: list[RunInfo] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every step succeeded."""
        return not self.failed


def apply_plan(ctx: Context, plan: Plan, view: ApplyView | None = None) -> ApplyResult:
    """Carry out the plan's changes, telling `view` each step's events. Call with the
    workspace lock held, after `recover` (which must run before the plan is made, since a
    repair changes what it sees); engine/operation.py does the whole sequence."""
    result = ApplyResult()
    desired = {} if plan.destroy else ctx.desired()
    apply_id = uuid.uuid4().hex[:12]
    steps = [c for c in plan.changes if c.action is not Action.NOOP]
    deletes = [c for c in steps if c.action is Action.DELETE]
    forwards = [c for c in steps if c.action is not Action.DELETE]
    runner = _Runner(ctx, desired, apply_id, view or NullView(), result, plan.include_data,
                     plan.upload_plans)
    # Deletes first, one kind at a time in reverse dependency order (runs, uploads, ...,
    # workspace: a deleted object is mostly gone from the manifest, so its kind is what
    # orders it); then the rest in dependency order. A failure stops what follows.
    groups = _delete_groups(deletes)
    while groups and result.ok:
        group = groups.pop(0)
        runner.run_phase(group, {c.address: set() for c in group})
    if result.ok:
        runner.run_phase(forwards, _forward_deps(forwards, desired))
    else:
        result.skipped.extend(c.address for group in groups for c in group)
        result.skipped.extend(c.address for c in forwards)
    return result


def recover(ctx: Context, view: ApplyView | None = None) -> list[str]:
    """Repair what an interrupted apply left, telling `view` what was found; call with the
    lock held, before planning (a repair may change what the plan sees). Returns what was
    found, as "step address" and the backend's repair lines."""
    view = view or NullView()
    interrupted = ctx.state.interrupted()
    repaired = ctx.provider.recover()
    for note in ctx.state.notes():
        view.event(events.StateNote(note))
    if interrupted:
        steps = tuple((address, step) for address, step in interrupted)
        view.event(events.InterruptedSteps(steps))
        ctx.state.clear_interrupted()
    for line in repaired:
        view.event(events.Repaired(line))
    return [f"{step} {address}" for address, step in interrupted] + repaired


def _forward_deps(changes: list[Change], desired: dict[str, Desired]) -> dict[str, set[str]]:
    addresses = {c.address for c in changes}
    return {c.address: set(desired[c.address].deps) & addresses if c.address in desired
            else set() for c in changes}


def _delete_groups(changes: list[Change]) -> list[list[Change]]:
    """Deletes by kind, dependents' kinds first (a barrier between kinds keeps this linear)."""
    from amlctl.engine.address import KINDS

    by_kind: dict[str, list[Change]] = {}
    for change in changes:
        by_kind.setdefault(kind_of(change.address), []).append(change)
    return [by_kind[kind] for kind in reversed(KINDS) if kind in by_kind]


class _Runner:
    def __init__(self, ctx: Context, desired: dict[str, Desired], apply_id: str,
                 view: ApplyView, result: ApplyResult, include_data: bool = False,
                 upload_plans: Any = None) -> None:
        self.ctx = ctx
        self.include_data = include_data  # --include-data: uploaded files are deleted too
        self.upload_plans = upload_plans  # address -> SyncPlan, made with the plan
        self.desired = desired
        self.apply_id = apply_id
        self.view = view
        self.result = result

    def emit(self, event: Event) -> None:
        self.view.event(event)

    def run_phase(self, changes: list[Change], deps: dict[str, set[str]]) -> None:
        by_address = {c.address: c for c in changes}
        pending = dict(deps)
        finished: set[str] = set()
        blocked: set[str] = set()
        running: dict[Future[None], str] = {}
        with ThreadPoolExecutor(max_workers=PARALLELISM) as pool:
            while pending or running:
                ready = [a for a, d in pending.items() if d <= finished]
                for address in sorted(ready):
                    del pending[address]
                    running[pool.submit(self.step, by_address[address])] = address
                if not running:
                    blocked.update(pending)  # dependencies failed
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    address = running.pop(future)
                    error = future.exception()
                    if error is None:
                        finished.add(address)
                        self.result.done.append(address)
                    else:
                        self.result.failed[address] = str(error)
                        self.emit(events.StepFailed(address, str(error)))
                        # Dependents of a failed step do not run.
                        for other, other_deps in list(pending.items()):
                            if address in other_deps:
                                blocked.add(other)
                                del pending[other]
        self.result.skipped.extend(sorted(blocked))

    def step(self, change: Change) -> None:
        started = time.monotonic()
        self.emit(events.StepStarted(change.address, change.kind, change.action))
        try:
            outcome = self._do(change)
        except AmlctlError:
            raise
        except Exception as err:  # a backend bug or an SDK error: name the step
            raise ProviderError(f"{type(err).__name__}: {err}") from err
        self.emit(events.StepFinished(change.address, change.kind, change.action,
                               time.monotonic() - started, outcome))

    def _journal(self, change: Change, step: str, action: Callable[[], Any]) -> Any:
        entry = self.ctx.state.begin(self.apply_id, change.address, step)
        try:
            value = action()
        except BaseException as err:
            self.ctx.state.end(entry, False, str(err)[:500])
            raise
        try:
            self.emit(events.ActionDone(change.address, step))
        finally:
            # Done in the backend whatever the view did (raised, or was interrupted): the
            # journal says so. Only a dead process leaves the entry begun, for `recover`.
            self.ctx.state.end(entry, True)
        return value

    def _do(self, change: Change) -> StepOutcome | None:
        provider = self.ctx.provider
        want = self.desired.get(change.address)
        if change.kind == "run":
            return self._run(change, want)
        if change.action is Action.DELETE:
            # Uploaded files (an upload's, a workspace's datastores) go only with
            # --include-data, whether the upload left the manifest or the stack is destroyed.
            data = change.kind in ("upload", "workspace") and self.include_data
            self._journal(change, "delete", lambda: provider.delete(
                change.address, include_data=data))
            self.ctx.state.record_applied(change.address, None)
            return None
        assert want is not None
        if change.action is Action.REPLACE:
            self._journal(change, "delete", lambda: provider.delete(change.address))
            self._journal(change, "create", lambda: provider.create(
                change.address, want.attrs, want.secrets))
        elif change.action is Action.CREATE:
            self._journal(change, "create", lambda: provider.create(
                change.address, want.attrs, want.secrets))
        elif change.action is Action.UPDATE:
            changed = [f.name for f in change.fields]
            self._journal(change, "update", lambda: provider.update(
                change.address, want.attrs, changed, want.secrets))
        synced = None
        if change.kind == "upload":
            resend = bool(change.detail.get("resend"))
            planned = (self.upload_plans or {}).get(change.address)
            synced = self._journal(change, "sync", lambda: self._sync(want, resend, planned))
        self.ctx.state.record_applied(change.address, want.attrs)
        return synced

    def _sync(self, want: Desired, resend: bool = False, planned: Any = None) -> Synced:
        from amlctl.engine.planner import hash_cache_path, plan_upload
        from amlctl.uploads import HashCache, apply_sync

        # The files of the plan, as shown (a file changed since is sent as it is now, with a
        # warning if the plan had read it; one gone fails the step); planned here only for a
        # plan made without them.
        sync_plan = planned if planned is not None else plan_upload(
            self.ctx, want, resend_all=resend)
        store = self.ctx.provider.file_store(want.attrs["datastore"], want.attrs["target_path"])
        progress = self.view.upload_progress(want.address)
        with HashCache(hash_cache_path(self.ctx)) as cache:
            outcome = apply_sync(sync_plan, self.ctx.loaded.root / want.attrs["src_dir"], store,
                                 progress=progress, cache=cache)
        for warning in outcome.warnings:
            self.emit(events.UploadWarning(want.address, warning))
        return events.Synced(len(outcome.sent), outcome.bytes_sent, len(outcome.deleted))

    def _run(self, change: Change, want: Desired | None) -> StepOutcome:
        provider = self.ctx.provider
        if change.action is Action.DELETE:
            run_ids = change.detail.get("run_ids") or [change.detail["run_id"]]
            for run_id in run_ids:
                self._journal(change, "cancel", lambda r=run_id: provider.cancel_run(r))
            self.ctx.state.record_applied(change.address, None)
            return events.RunsCanceled(tuple(run_ids))
        assert want is not None
        request = run_request(self.ctx.loaded, want, change.detail.get("supersedes"))
        info = self._journal(change, "submit", lambda: provider.submit_run(request))
        self.result.runs.append(info)
        # what this submission's secrets were, fingerprinted: the plan notes a rotation later
        self.ctx.state.record_applied(change.address, {"env_secrets": secret_env_fingerprints(
            want.secrets, self.ctx.state.fingerprint_key)} if want.secrets else None)
        return events.RunSubmitted(info.id, info.status)
