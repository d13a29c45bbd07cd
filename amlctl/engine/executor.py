"""Apply a plan: primitive steps (create, update, delete, sync, submit, cancel) in dependency
order, independent steps in parallel, each journalled begun/done/failed.

A replace is a delete and a create around the same address, so recovery after a crash only
reasons about primitive steps: every step is idempotent (create of an existing object updates
it, delete of a missing one is a no-op), and run submission is repaired by the provider.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

from amlctl.engine.address import kind_of
from amlctl.engine.desired import Desired, run_request, secret_env_fingerprints
from amlctl.engine.differ import secret_fields
from amlctl.engine.plan import Action, Change, Plan
from amlctl.engine.planner import Context
from amlctl.errors import AmlctlError, ProviderError
from amlctl.providers.base import LiveObject, RunInfo

Report = Callable[[str], None]
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


def apply_plan(ctx: Context, plan: Plan, report: Report = lambda _: None,
               show_progress: bool = False) -> ApplyResult:
    """Carry out the plan's changes. Call with the workspace lock held, after `recover`
    (which must run before the plan is made, since a repair changes what it sees)."""
    result = ApplyResult()
    desired = {} if plan.destroy else ctx.desired()
    apply_id = uuid.uuid4().hex[:12]
    steps = [c for c in plan.changes if c.action is not Action.NOOP]
    deletes = [c for c in steps if c.action is Action.DELETE]
    forwards = [c for c in steps if c.action is not Action.DELETE]
    runner = _Runner(ctx, desired, apply_id, report, result, show_progress, plan.include_data)
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


def recover(ctx: Context, report: Report = lambda _: None) -> list[str]:
    """Report and repair what an interrupted apply left; call with the lock held, before
    planning (a repair may change what the plan sees). Returns what was found."""
    interrupted = ctx.state.interrupted()
    repaired = ctx.provider.recover()
    for note in ctx.state.notes():
        report(note)
    if interrupted:
        steps = ", ".join(f"{step} {address}" for address, step in interrupted)
        report(f"A previous apply was interrupted during: {steps}. Converging from live state.")
        ctx.state.clear_interrupted()
    for line in repaired:
        report(f"Recovered: {line}")
    return [f"{step} {address}" for address, step in interrupted] + repaired


def import_object(ctx: Context, address: str) -> LiveObject:
    """Adopt an existing object into the stack (call with the lock held) and record its
    live attributes as applied, so changes made to it outside amlctl show as drift from now
    on. Secrets, and unset fields (a write-only secret reads as unset), are left out:
    amlctl cannot tell what they hold, so the next plan does not claim to know."""
    obj = ctx.provider.adopt(address)
    if kind_of(address) not in ("run", "upload"):
        secret = secret_fields(obj.attrs)
        ctx.state.record_applied(address, {k: v for k, v in obj.attrs.items()
                                             if k not in secret and v is not None})
    return obj


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
                 report: Report, result: ApplyResult, show_progress: bool,
                 include_data: bool = False) -> None:
        self.ctx = ctx
        self.include_data = include_data  # --include-data: uploaded files are deleted too
        self.desired = desired
        self.apply_id = apply_id
        self.report = report
        self.result = result
        self.show_progress = show_progress
        # Test hooks for crash tests: sleep once step N is done, or once the Nth primitive
        # action is done but not yet journalled (the window a crash is hardest to recover in).
        self.pause_after = int(os.environ.get("AMLCTL_PAUSE_AFTER_STEP", "0") or 0)
        self.pause_in = int(os.environ.get("AMLCTL_PAUSE_IN_STEP", "0") or 0)
        self.steps_done = 0
        self.actions_done = 0
        self._count_lock = threading.Lock()

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
                        self.report(f"{address}: failed: {error}")
                        # Dependents of a failed step do not run.
                        for other, other_deps in list(pending.items()):
                            if address in other_deps:
                                blocked.add(other)
                                del pending[other]
        self.result.skipped.extend(sorted(blocked))

    def step(self, change: Change) -> None:
        started = time.monotonic()
        verb = {Action.CREATE: "Creating", Action.UPDATE: "Updating",
                Action.REPLACE: "Replacing", Action.DELETE: "Destroying"}[change.action]
        if change.kind == "run":
            verb = "Canceling" if change.action is Action.DELETE else "Submitting"
        self.report(f"{change.address}: {verb}...")
        try:
            detail = self._do(change)
        except AmlctlError:
            raise
        except Exception as err:  # a backend bug or an SDK error: name the step
            raise ProviderError(f"{type(err).__name__}: {err}") from err
        elapsed = time.monotonic() - started
        self.report(f"{change.address}: done after {elapsed:.1f}s{detail}")
        with self._count_lock:
            self.steps_done += 1
            pause = bool(self.pause_after) and self.steps_done >= self.pause_after
        if pause:  # test hook: lets crash tests SIGKILL between steps
            self.report(f"{change.address}: paused (AMLCTL_PAUSE_AFTER_STEP)")
            time.sleep(3600)

    def _journal(self, change: Change, step: str, action: Callable[[], Any]) -> Any:
        entry = self.ctx.state.begin(self.apply_id, change.address, step)
        try:
            value = action()
        except BaseException as err:
            self.ctx.state.end(entry, False, str(err)[:500])
            raise
        with self._count_lock:
            self.actions_done += 1
            pause = bool(self.pause_in) and self.actions_done >= self.pause_in
        if pause:  # test hook: lets crash tests SIGKILL inside a step
            self.report(f"{change.address}: paused in {step} (AMLCTL_PAUSE_IN_STEP)")
            time.sleep(3600)
        self.ctx.state.end(entry, True)
        return value

    def _do(self, change: Change) -> str:
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
            return ""
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
        detail = ""
        if change.kind == "upload":
            resend = bool(change.detail.get("resend"))
            detail = self._journal(change, "sync", lambda: self._sync(want, resend))
        self.ctx.state.record_applied(change.address, want.attrs)
        return detail

    def _sync(self, want: Desired, resend: bool = False) -> str:
        from amlctl.engine.planner import hash_cache_path, plan_upload
        from amlctl.render.values import human_bytes
        from amlctl.uploads import HashCache, apply_sync, progress_for

        # fresh: files may have changed since the plan
        sync_plan = plan_upload(self.ctx, want, resend_all=resend)
        store = self.ctx.provider.file_store(want.attrs["datastore"], want.attrs["target_path"])
        progress = progress_for(want.address) if self.show_progress else None
        with HashCache(hash_cache_path(self.ctx)) as cache:
            outcome = apply_sync(sync_plan, self.ctx.loaded.root / want.attrs["src_dir"], store,
                                 progress=progress, cache=cache)
        for warning in outcome.warnings:
            self.report(f"{want.address}: warning: {warning}")
        return (f" ({len(outcome.sent)} files, {human_bytes(outcome.bytes_sent)} sent, "
                f"{len(outcome.deleted)} deleted)")

    def _run(self, change: Change, want: Desired | None) -> str:
        provider = self.ctx.provider
        if change.action is Action.DELETE:
            run_ids = change.detail.get("run_ids") or [change.detail["run_id"]]
            for run_id in run_ids:
                self._journal(change, "cancel", lambda r=run_id: provider.cancel_run(r))
            self.ctx.state.record_applied(change.address, None)
            return f" (canceled {', '.join(run_ids)})"
        assert want is not None
        request = run_request(self.ctx.loaded, want, change.detail.get("supersedes"))
        info = self._journal(change, "submit", lambda: provider.submit_run(request))
        self.result.runs.append(info)
        # what this submission's secrets were, fingerprinted: the plan notes a rotation later
        self.ctx.state.record_applied(change.address, {"env_secrets": secret_env_fingerprints(
            want.secrets, self.ctx.state.fingerprint_key)} if want.secrets else None)
        return f" (run {info.id}, {info.status})"
