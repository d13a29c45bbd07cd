"""Two CI runners on one Azure ML stack: separate checkouts and state folders, one shared state.

Every story runs on both backends (`backend` is parametrized): `azure` (AzureProvider, SDK v1,
against FakeAzure; its run history service is the in-memory double) and `azure-v2`
(AzureV2Provider, azure-ai-ml, against FakeV2Azure: jobs live in the fake). Runners are engine
contexts in this process (providers with their own local state folder and checkout path) over
the same fake service and Azurite, except the runner killed with -9, which is a real process.
What runners share is only what Azure holds: the state blob, its lease, the workspace. The
CLI is driven in-process where the fake serves what a command needs (state pull,
force-unlock); end-to-end CLI runs in subprocesses are in test_azure_cli.py.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fake_service import TEST_SUBSCRIPTION as SUBSCRIPTION
from fake_service import FakeAzure
from history_double import HistoryDouble

from amlctl.errors import LockError
from amlctl.providers.azure.computes import ComputeSettings
from amlctl.providers.azure.provider import AzureProvider
from amlctl.providers.azure.retry import RetryPolicy
from amlctl.providers.base import OWNER_TAG, Provider

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist"
V2_TESTS = Path(__file__).resolve().parents[1] / "azure_v2"
pytestmark = pytest.mark.parametrize("backend", ["azure", "azure-v2"])


def make_provider(backend: str, workspace: dict[str, Any], state_dir: Path, token_auth: Any,
                  history: HistoryDouble, **tuning: Any) -> Provider:
    """The backend's provider of the mnist stack, with tokens minted locally (v1: the SDK's
    TokenAuthentication, runs in `history`; v2: an azure-core token credential, jobs in the
    fake)."""
    if backend == "azure":
        return AzureProvider(workspace, "mnist", state_dir, auth=token_auth, cloud="AzureCloud",
                             run_service=history, **tuning)
    if str(V2_TESTS) not in sys.path:
        sys.path.insert(0, str(V2_TESTS))
    from v2_support import FakeTokenCredential

    from amlctl.providers.azure_v2.provider import AzureV2Provider

    return AzureV2Provider(workspace, "mnist", state_dir, credential=FakeTokenCredential(),
                           cloud="AzureCloud", **tuning)


@pytest.fixture
def runners(fake: FakeAzure, backend: str, token_auth: Any, tmp_path: Path,
            monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """`open_runner(name)`: the mnist stack checked out at `tmp/<name>/checkout`, state folder
    beside it, as a CI job of that runner would see it."""
    from amlctl.engine.planner import Context, bind_state
    from amlctl.manifest.loader import load_manifest

    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUBSCRIPTION)
    monkeypatch.delenv("AMLCTL_HOME", raising=False)
    fake.add_workspace("mnist-rg", "mnist-ws", tags={"team": "vision", OWNER_TAG: "mnist"})
    opened: list[Any] = []
    history = HistoryDouble()  # v1: the workspace's run history, one service for both runners

    def open_runner(name: str) -> Any:
        checkout = tmp_path / name / "checkout"
        if not checkout.exists():
            shutil.copytree(EXAMPLE, checkout)
        loaded = load_manifest(checkout / "amlctl.yaml")
        state_dir = tmp_path / name / "state"
        provider = make_provider(backend, loaded.manifest.workspace.model_dump(), state_dir,
                                 token_auth, history, policy=RetryPolicy(sleep=lambda _s: None),
                                 compute_settings=ComputeSettings(sleep=lambda _s: None))
        ctx = bind_state(Context(loaded, provider, provider.state_store(), state_dir, backend))
        opened.append(ctx)
        return ctx

    yield open_runner
    for ctx in opened:
        ctx.close()


def _apply(ctx: Any) -> Any:
    from amlctl.engine.executor import apply_plan, recover
    from amlctl.engine.planner import make_plan

    with ctx.state.lock("amlctl apply"):
        recover(ctx)
        result = apply_plan(ctx, make_plan(ctx))
    assert result.ok, result
    return result


def test_runner_b_sees_what_runner_a_applied_and_drift(runners: Any, fake: FakeAzure) -> None:
    from amlctl.engine.plan import Action
    from amlctl.engine.planner import make_plan
    from amlctl.render.human import plain, render_plan

    a = runners("a")
    _apply(a)
    # the state blob sits in the default container, but is never an upload's file
    from amlctl.providers.azure.blobfiles import BlobFileStore

    container = a.provider._default_container()
    assert container.get_blob_client("amlctl-state/mnist.json").exists()
    assert not [p for p in BlobFileStore(container, "").list_files()
                if p.startswith("amlctl-state/")]
    b = runners("b")
    assert not (b.state_dir / "engine.db").exists()  # nothing local on B
    plan = make_plan(b)
    assert [c.address for c in plan.changes if c.action is not Action.NOOP] == []
    assert b.state.applied() == a.state.applied()
    # the cluster is scaled behind amlctl's back (the portal): B names it drift
    record = fake.workspaces[("mnist-rg", "mnist-ws")].computes["cpu-cluster"]
    record["properties"]["properties"]["scaleSettings"]["maxNodeCount"] = 7
    drifted = make_plan(b)
    assert [d.address for d in drifted.drift] == ["compute.cpu-cluster"]
    text = render_plan(drifted, plain)
    assert "objects changed outside amlctl since it last applied them" in text
    assert "max_nodes" in text


def test_runners_apply_at_once_one_waits_for_the_other(runners: Any) -> None:
    a = runners("a")
    b = runners("b")
    with a.state.lock("amlctl apply") as holder:
        with pytest.raises(LockError) as refused, b.state.lock("amlctl apply"):
            pass
        assert f"lock {holder} held by amlctl apply" in str(refused.value)
    # B waiting with --lock-timeout gets it as soon as A is done
    released = threading.Event()
    got_it: list[float] = []

    def a_applies() -> None:
        with a.state.lock("amlctl apply"):
            released.wait(10)

    thread = threading.Thread(target=a_applies)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while a.state._lease is None and time.monotonic() < deadline:  # A holds it
            time.sleep(0.05)
        assert a.state._lease is not None

        def b_waits() -> None:
            with b.state.lock("amlctl apply", timeout=30):
                got_it.append(time.monotonic())

        waiter = threading.Thread(target=b_waits)
        waiter.start()
        time.sleep(0.5)  # let B start polling (what follows holds however long this takes)
        released_at = time.monotonic()
        released.set()
        waiter.join(30)
        assert got_it, "B never got the lock"
        assert got_it[0] >= released_at  # not before A let go
    finally:
        released.set()
        thread.join()
    _apply(b)  # and B's apply proceeds against what A left


def _cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """`amlctl ARGS...` in-process (the real CLI, azure backend, the fake and Azurite)."""
    from amlctl.cli import main

    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 0
    out, err = capsys.readouterr()
    return code, out, err


def test_state_pull_and_force_unlock_from_the_cli(
        runners: Any, fake: FakeAzure, backend: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    a = runners("a")
    _apply(a)
    fake.add_service_principal("ci-app", "s3cret")
    for name, value in {"AZURE_TENANT_ID": "72f988bf-0000-0000-0000-000000000001",
                        "AZURE_CLIENT_ID": "ci-app", "AZURE_CLIENT_SECRET": "s3cret"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AMLCTL_HOME", str(tmp_path / "cli-state"))
    manifest = str(tmp_path / "a" / "checkout" / "amlctl.yaml")
    code, out, err = _cli(capsys, "--backend", backend, "state", "pull", "-f", manifest)
    assert code == 0, err
    pulled = json.loads(out)
    assert pulled["location"] == "blob amlctl-state/mnist.json of the workspace's default " \
                                 "datastore"
    assert set(pulled["applied"]) == set(a.state.applied())
    assert pulled["fingerprint_key"] == "(sensitive)"
    assert base64.b64encode(a.state.fingerprint_key).decode() not in out

    with a.state.lock("amlctl apply") as lock_id:
        code, out, err = _cli(capsys, "--backend", backend, "force-unlock", lock_id,
                              "-f", manifest)
        assert code == 0, err
        assert f"Removed lock {lock_id} (held by amlctl apply" in out
        assert "broke the lease" in out
        with runners("b").state.lock("amlctl apply", timeout=5):
            pass  # free at once


RUNNER_A = """\
import sys
sys.path.insert(0, {tests!r})
sys.path.insert(0, {pausing!r})
from pathlib import Path
from fake_service import make_token, route_hosts
from history_double import HistoryDouble
with route_hosts({fake_port}, {blob_port}):
    from amlctl.providers.azure import sdk
    sdk.load()
    from azureml.core.authentication import TokenAuthentication
    from amlctl.engine.executor import apply_plan, recover
    from amlctl.engine.planner import Context, bind_state, make_plan
    from amlctl.manifest.loader import load_manifest
    from amlctl.render.events import TextView
    from pausing import PausingView
    from test_azure_runners import make_provider
    loaded = load_manifest(Path({manifest!r}))
    auth = TokenAuthentication(lambda audience: make_token(str(audience)), cloud="AzureCloud")
    provider = make_provider({backend!r}, loaded.manifest.workspace.model_dump(),
                             Path({state!r}), auth, HistoryDouble())
    provider.state_lease_seconds = {lease}
    ctx = bind_state(Context(loaded, provider, provider.state_store(), Path({state!r}),
                             {backend!r}))
    # shown as the CLI shows it; paused once the first action is done, before its journal
    view = PausingView(TextView(lambda text: print(text, end="", flush=True)), "in-step", 1)
    with ctx.state.lock("amlctl apply"):
        recover(ctx, view)
        apply_plan(ctx, make_plan(ctx), view)
"""


def test_runner_a_killed_mid_apply_runner_b_proceeds_when_the_lease_expires(
        runners: Any, fake: FakeAzure, backend: str, tmp_path: Path, azure_edge: Any) -> None:
    """A (another process) is killed -9 inside its first step, lease held; B waits with a
    lock timeout, gets the lock once A's 15 s lease expires, repairs and converges."""
    import os
    import subprocess
    import sys

    from pausing import RecordingView

    from amlctl.engine.events import Event, InterruptedSteps
    from amlctl.engine.executor import recover
    from amlctl.engine.plan import Action
    from amlctl.engine.planner import make_plan

    b = runners("b")  # also makes the workspace and checks out the manifest
    checkout = tmp_path / "a" / "checkout"
    shutil.copytree(EXAMPLE, checkout)
    script = RUNNER_A.format(tests=str(Path(__file__).parent),
                             pausing=str(Path(__file__).parents[1]),
                             fake_port=fake.port, backend=backend,
                             blob_port=azure_edge.azurite.port,
                             manifest=str(checkout / "amlctl.yaml"),
                             state=str(tmp_path / "a" / "state"), lease=15)
    env = {**os.environ, **azure_edge.env, "AZURE_SUBSCRIPTION_ID": SUBSCRIPTION,
           "PYTHONPATH": os.pathsep.join(sys.path)}
    log = tmp_path / "runner-a.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", script], stdout=out,
                                stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60
        while "paused in" not in log.read_text() and proc.poll() is None:
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        assert proc.poll() is None, log.read_text()
        with pytest.raises(LockError, match="held by amlctl apply"), \
                b.state.lock("amlctl apply"):
            pass
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        events: list[Event] = []
        with b.state.lock("amlctl apply", timeout=45):
            waited = time.monotonic() - killed
            recover(b, RecordingView(events))
            _apply_locked(b)
        assert waited <= 15 + 5, waited  # at most A's lease after its last renewal
        # what A was paused (then killed) in is what B found interrupted
        paused = re.search(r"^(\S+): paused in (\S+)$", log.read_text(), re.MULTILINE)
        assert paused is not None, log.read_text()
        interrupted = [e for e in events if isinstance(e, InterruptedSteps)]
        assert len(interrupted) == 1 and paused.groups() in interrupted[0].steps, events
        plan = make_plan(b)
        assert [c.address for c in plan.changes if c.action is not Action.NOOP] == []
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _apply_locked(ctx: Any) -> None:
    from amlctl.engine.executor import apply_plan
    from amlctl.engine.planner import make_plan

    result = apply_plan(ctx, make_plan(ctx))
    assert result.ok, result
