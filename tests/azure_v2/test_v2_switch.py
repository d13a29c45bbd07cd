"""The switch between SDKs: the quickstart and the Azure example applied through the engine
with the v1 backend (`azure`, azureml-sdk), then planned with the v2 backend (`azure-v2`,
azure-ai-ml): no changes, and the reverse.

Both SDKs run for real against one fake workspace (fake_v2.py). v1's run history service is
not part of the fake yet, so the v1 half keeps its in-memory double (tests/azure/
history_double.py); the double also records each run where the fake keeps jobs, as the real
service lists v1 runs through the v2 jobs API.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from fake_v2 import FakeV2Azure
from history_double import HistoryDouble
from v2_support import SUBSCRIPTION, FakeTokenCredential

from amlctl.engine.plan import Action
from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.azure.runs import RunRecord
from amlctl.providers.azure_v2.provider import AzureV2Provider
from amlctl.providers.base import OWNER_TAG

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"
RG, WS, STACK = "mnist-rg", "mnist-ws", "mnist"


class RecordingHistory(HistoryDouble):
    """The v1 run-history double, also listing its runs as jobs of the fake workspace."""

    def __init__(self, fake: FakeV2Azure) -> None:
        super().__init__()
        self.fake = fake

    def submit(self, experiment: str, config: Any, tags: dict[str, str],
               run_id: str) -> RunRecord:
        record = super().submit(experiment, config, tags, run_id)
        self.fake.add_job(RG, WS, record.id, experiment, tags,
                          compute=config.run_config.target)
        return record


@pytest.fixture(params=["mnist", "azure"])
def loaded(request: pytest.FixtureRequest, fake: FakeV2Azure, tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Any:
    """The quickstart (mnist) and the Azure example (GPU cluster in a vnet, a blob datastore
    with its key, an upload to it), copied with the folders they refer to."""
    from amlctl.manifest.loader import load_manifest

    manifest = EXAMPLE.parent / request.param / "amlctl.yaml"
    assert manifest.is_file(), f"the example {manifest} is missing"
    shutil.copytree(EXAMPLE.parent, tmp_path / "examples")
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.delenv("AMLCTL_HOME", raising=False)
    fake.add_workspace(RG, WS, tags={"team": "vision", OWNER_TAG: STACK})
    path = tmp_path / "examples" / request.param / "amlctl.yaml"
    # the Azure example's data account is the emulator's (Azurite serves one test account)
    account, key, make_container = fake.default_storage or ("mystorage", "", None)
    path.write_text(path.read_text().replace("account_name: mystorage",
                                             f"account_name: {account}"))
    if make_container is not None:
        make_container("images")
    monkeypatch.setenv("IMAGES_KEY", key)
    return load_manifest(path)


def _v1(loaded: Any, fake: FakeV2Azure, token_auth: Any) -> AzureProvider:
    return AzureProvider(loaded.manifest.workspace.model_dump(), STACK, loaded.root / ".amlctl",
                         auth=token_auth, cloud="AzureCloud", run_service=RecordingHistory(fake),
                         policy=RetryPolicy(sleep=lambda _s: None),
                         compute_settings=ComputeSettings(sleep=lambda _s: None))


def _v2(loaded: Any) -> AzureV2Provider:
    return AzureV2Provider(loaded.manifest.workspace.model_dump(), STACK,
                           loaded.root / ".amlctl", credential=FakeTokenCredential(),
                           cloud="AzureCloud", policy=RetryPolicy(sleep=lambda _s: None),
                           compute_settings=ComputeSettings(sleep=lambda _s: None))


def _context(loaded: Any, provider: Any, backend: str) -> Any:
    """The engine context as `open_context` makes it: the backend's own state store (both
    backends keep it in the same blob of the default datastore)."""
    from amlctl.engine.planner import Context, bind_state

    return bind_state(Context(loaded, provider, provider.state_store(), loaded.root / ".amlctl",
                              backend))


def _apply(ctx: Any) -> dict[str, Action]:
    from amlctl.engine.executor import apply_plan
    from amlctl.engine.planner import make_plan

    plan = make_plan(ctx)
    result = apply_plan(ctx, plan)
    assert result.ok, result
    return {c.address: c.action for c in plan.changes}


def _changes(ctx: Any) -> dict[str, Action]:
    from amlctl.engine.planner import make_plan

    plan = make_plan(ctx)
    return {c.address: c.action for c in plan.changes if c.action is not Action.NOOP}


def everything(loaded: Any) -> dict[str, Action]:
    """What a first apply of the example creates (the workspace exists already)."""
    m = loaded.manifest
    return {f"{kind}.{name}": Action.CREATE
            for kind, names in (("compute", m.computes), ("datastore", m.datastores),
                                ("experiment", m.experiments), ("upload", m.uploads),
                                ("run", m.runs)) for name in names}


def test_applied_with_v1_plans_no_change_with_v2(loaded: Any, fake: FakeV2Azure,
                                                  token_auth: Any) -> None:
    v1 = _context(loaded, _v1(loaded, fake, token_auth), "azure")
    try:
        assert {a: x for a, x in _apply(v1).items() if x is not Action.NOOP} == everything(loaded)
        assert _changes(v1) == {}
    finally:
        v1.close()
    v1_runs = v1.provider.runs().runs
    assert len(v1_runs) == 1
    v2 = _context(loaded, _v2(loaded), "azure-v2")
    try:
        assert _changes(v2) == {}
        # one state (and lock) for both backends: v1's blob, read by v2
        container = v2.provider._default_container()
        assert [b.name for b in container.list_blobs(name_starts_with="amlctl-state/")] == \
            [f"amlctl-state/{STACK}.json"]
        assert v2.state.applied(), "v2 reads what v1 recorded as applied"
        found = v2.provider.list_runs(name="tf-mnist")
        assert [r.id for r in found] == list(v1_runs), "v2 finds the run v1 submitted"
        # and names it as v1 did: a submission through v2 would be the same job
        from amlctl.providers.azure_v2.jobs import job_name

        [want] = [d for d in v2.desired().values() if d.kind == "run"]
        assert job_name(STACK, want.name, want.attrs["spec_hash"]) == found[0].id
        live = v2.provider.read_all()
    finally:
        v2.close()
    [cluster] = loaded.manifest.computes
    assert live[f"compute.{cluster}"].attrs["vm_priority"] == "lowpriority"
    assert live["upload.mnist"].owner == STACK
    assert not fake.calls_to("PUT", "/jobs/"), "v2 submitted nothing"


def test_applied_with_v2_plans_no_change_with_v1(loaded: Any, fake: FakeV2Azure,
                                                  token_auth: Any) -> None:
    v2 = _context(loaded, _v2(loaded), "azure-v2")
    try:
        assert {a: x for a, x in _apply(v2).items() if x is not Action.NOOP} == everything(loaded)
        assert _changes(v2) == {}
    finally:
        v2.close()
    jobs = fake.job_bodies(RG, WS)
    assert len(jobs) == 1
    v1_provider = _v1(loaded, fake, token_auth)
    history = v1_provider.runs()
    # v1 reads runs from the run history service; the double holds what that service would
    # return for the job v2 created (same id, experiment and tags)
    for name, body in jobs.items():
        props = body["properties"]
        history.experiments_by_name.setdefault(props["experimentName"], {OWNER_TAG: STACK})
        history.runs[name] = RunRecord(name, props["experimentName"], "Queued",
                                       dict(props["tags"]), 1.0)
    v1 = _context(loaded, v1_provider, "azure")
    try:
        assert _changes(v1) == {}
    finally:
        v1.close()
    assert history.submissions == [], "v1 submitted nothing"


def test_a_v1_runner_and_a_v2_runner_take_turns_on_one_lock(loaded: Any, fake: FakeV2Azure,
                                                            token_auth: Any) -> None:
    """During a migration some pipelines run `azure`, others `azure-v2`: both take the same
    lease on the same state blob, so one refuses while the other holds it, naming it."""
    from amlctl.errors import LockError

    v1 = _context(loaded, _v1(loaded, fake, token_auth), "azure")
    v2 = _context(loaded, _v2(loaded), "azure-v2")
    try:
        for holder, other in ((v1, v2), (v2, v1)):
            with holder.state.lock("amlctl apply") as lock_id:
                with pytest.raises(LockError) as refused, other.state.lock("amlctl apply"):
                    pass
                assert f"lock {lock_id} held by amlctl apply" in str(refused.value)
            with other.state.lock("amlctl apply"):
                pass  # free once the holder let go
    finally:
        v1.close()
        v2.close()
