"""The azure backend's state blob and lease lock, against Azurite (real blob semantics).

Blob traffic goes to `https://ACCOUNT.blob.core.windows.net` by its production name, routed
to Azurite; leases, ETags and metadata are Azurite's, not a hand-written fake's. Leases use
the shortest duration Azure allows (15 s); expiry is awaited on a condition with a bound.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from azurite import state_container
from fake_service import FakeAzure

from amlctl.engine.history import History
from amlctl.errors import LockError, StateError, UsageError

LEASE = 15  # the shortest finite lease Azure allows
HERE = Path(__file__).parent


@pytest.fixture
def container(fake: FakeAzure) -> Iterator[Any]:
    """A fresh container of the state account in Azurite."""
    client = state_container(f"state-{uuid.uuid4().hex[:12]}")
    client.create_container()
    yield client
    client.delete_container()


def _store(container: Any, tmp: Path, stack: str = "story", lease: int = LEASE) -> Any:
    from amlctl.providers.azure.state import BlobState, default_blob_name

    tmp.mkdir(parents=True, exist_ok=True)
    return BlobState(stack, lambda: container, default_blob_name(stack), tmp,
                     f"test blob of {stack}", lease)


def _stored(container: Any, stack: str = "story") -> dict[str, Any]:
    return json.loads(container.download_blob(f"amlctl-state/{stack}.json").readall())


def test_state_round_trip_and_a_stale_etag_is_refused(container: Any, tmp_path: Path) -> None:
    a = _store(container, tmp_path / "a")
    a.bind({"manifest": "amlctl.yaml"})
    a.record_applied("compute.cpu", {"max_nodes": 2})
    b = _store(container, tmp_path / "b")
    b.bind({"manifest": "amlctl.yaml"})
    assert b.applied() == {"compute.cpu": {"max_nodes": 2}}
    assert b.identity() == a.identity()  # one stack id, whoever reads it
    a.record_applied("compute.cpu", {"max_nodes": 3})  # A writes after B read
    with pytest.raises(StateError, match="changed since amlctl read it"):
        b.record_applied("compute.gpu", {"max_nodes": 1})
    assert _stored(container)["applied"]["compute.cpu"]["attrs"] == {"max_nodes": 3}
    assert "compute.gpu" not in _stored(container)["applied"]  # nothing overwritten
    # a second creator of a state that did not exist loses too
    c = _store(container, tmp_path / "c", stack="other")
    d = _store(container, tmp_path / "d", stack="other")
    c.applied(), d.applied()  # both read "no state yet"
    c.record_applied("workspace", {"location": "westeurope"})
    with pytest.raises(StateError, match="created by another runner"):
        d.record_applied("workspace", {"location": "northeurope"})
    assert _stored(container, "other")["applied"]["workspace"]["attrs"] == {
        "location": "westeurope"}


def test_second_lock_is_refused_naming_the_holder_and_force_unlock_breaks_it(
        container: Any, tmp_path: Path) -> None:
    a = _store(container, tmp_path / "a")
    b = _store(container, tmp_path / "b")
    with a.lock("amlctl apply") as lock_id:
        a.record_applied("compute.cpu", {"max_nodes": 2})  # written under the lease
        props = container.get_blob_client("amlctl-state/story.json").get_blob_properties()
        assert props.lease.state == "leased"
        assert json.loads(props.metadata["amlctl_lock"])["id"] == lock_id
        with pytest.raises(LockError) as refused, b.lock("amlctl apply"):
            pass
        message = str(refused.value)
        assert f"lock {lock_id} held by amlctl apply (pid {os.getpid()} on " \
               f"{socket.gethostname()}" in message
        assert f"amlctl force-unlock {lock_id}" in message
        # a write without the lease is refused by the service, not applied
        with pytest.raises(StateError):
            b.record_applied("compute.gpu", {"max_nodes": 1})
        with pytest.raises(UsageError, match="does not match the current lock"):
            b.force_unlock("0000deadbeef")
        holder, what = b.force_unlock(lock_id)
        assert holder["id"] == lock_id and "broke the lease" in what
        with b.lock("amlctl apply", timeout=5):  # free at once
            b.record_applied("compute.gpu", {"max_nodes": 1})
        # A lost its lease: its next write is refused instead of overwriting B's
        with pytest.raises(StateError):
            a.record_applied("compute.cpu", {"max_nodes": 9})
    assert set(_stored(container)["applied"]) == {"compute.cpu", "compute.gpu"}
    assert _stored(container)["applied"]["compute.cpu"]["attrs"] == {"max_nodes": 2}
    with pytest.raises(UsageError, match="not locked"):
        b.force_unlock(lock_id)


HOLDER = """\
import sys, time
sys.path.insert(0, {tests!r})
from pathlib import Path
from azurite import state_container
from fake_service import route_hosts
from amlctl.providers.azure.state import BlobState
with route_hosts({fake_port}, {blob_port}):
    container = state_container({name!r})
    store = BlobState("story", lambda: container, "amlctl-state/story.json", Path({tmp!r}),
                      "test blob of story", {lease})
    with store.lock("amlctl apply") as lock_id:
        print(lock_id, flush=True)
        time.sleep(600)
"""


def test_a_renewed_lease_holds_and_a_killed_holder_frees_it_when_it_expires(
        container: Any, tmp_path: Path, azure_edge: Any) -> None:
    """A holder in another process keeps its 15 s lease by renewing it; killed -9, it stops
    renewing and the lease expires: the waiting runner gets the lock, no force-unlock."""
    script = HOLDER.format(tests=str(HERE), fake_port=azure_edge.service.port,
                           blob_port=azure_edge.azurite.port, name=container.container_name,
                           tmp=str(tmp_path / "a"), lease=LEASE)
    env = {**os.environ, **azure_edge.env, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    try:
        lock_id = proc.stdout.readline().strip() if proc.stdout else ""
        assert lock_id, proc.stderr.read() if proc.stderr else ""
        b = _store(container, tmp_path / "b")
        started = time.monotonic()
        # renewed past its 15 s
        with pytest.raises(LockError, match=lock_id), b.lock("amlctl apply", timeout=LEASE + 3):
            pass
        assert time.monotonic() - started >= LEASE + 3
        proc.kill()
        proc.wait()
        killed = time.monotonic()
        with b.lock("amlctl apply", timeout=LEASE + 15) as mine:
            waited = time.monotonic() - killed
            assert mine != lock_id
        assert waited <= LEASE + 5  # at most one lease period after the last renewal
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_first_use_migrates_local_state(container: Any, tmp_path: Path) -> None:
    state_dir = tmp_path / "local"
    history = History(state_dir, "story")
    history.record_applied("compute.cpu", {"max_nodes": 2, "admin_user_password":
                                           "sha256:0123456789abcdef"})
    history.begin("old", "compute.gpu", "create")
    history.close()
    store = _store(container, state_dir)
    with store.lock("amlctl apply"):
        assert store.notes() == [f"Migrating the local state {state_dir / 'engine.db'} to "
                                 "test blob of story."]
        # an unkeyed fingerprint is dropped: it would look changed under the stack's key
        assert store.applied() == {"compute.cpu": {"max_nodes": 2}}
        assert store.interrupted() == [("compute.gpu", "create")]
    assert _stored(container)["migrated_from"] == str(state_dir / "engine.db")
    # once migrated, the blob is the state: local changes no longer matter
    (state_dir / "engine.db").unlink()
    assert _store(container, tmp_path / "elsewhere").applied() == {
        "compute.cpu": {"max_nodes": 2}}


def test_a_second_manifest_with_the_same_name_is_refused(container: Any,
                                                         tmp_path: Path) -> None:
    first = _store(container, tmp_path / "a")
    first.bind({"manifest": "team-a/amlctl.yaml", "repository": "https://example.org/a.git"})
    first.record_applied("workspace", {"location": "westeurope"})
    second = _store(container, tmp_path / "b")
    with pytest.raises(StateError) as refused:
        second.bind({"manifest": "team-b/amlctl.yaml"})
    message = str(refused.value)
    assert "belongs to another manifest (manifest team-a/amlctl.yaml of " \
           "https://example.org/a.git" in message
    assert "amlctl state rebind" in message
    # the same manifest from another checkout (same relative path) is the same stack
    _store(container, tmp_path / "c").bind(
        {"manifest": "team-a/amlctl.yaml", "repository": "https://example.org/a.git"})


def test_state_document_redacts_the_fingerprint_key(container: Any, tmp_path: Path) -> None:
    store = _store(container, tmp_path)
    store.record_applied("workspace", {"location": "westeurope"})
    key = store.fingerprint_key
    assert key is not None and len(key) == 32
    assert store.document()["fingerprint_key"] == "(sensitive)"
    from amlctl.providers.base import fingerprint

    keyed = fingerprint("hunter2", key)
    assert keyed == "sha256:" + hmac.new(key, b"hunter2", hashlib.sha256).hexdigest()[:16]
    assert keyed != fingerprint("hunter2")  # not the plain, guessable hash


def test_before_the_workspace_exists_state_waits_in_memory_then_takes_the_lease(
        container: Any, tmp_path: Path) -> None:
    """A first apply creates the workspace that holds the state: until then the lock is local
    and the state in memory; the first write after that creates the blob under a lease."""
    from amlctl.engine.lock import read_lock
    from amlctl.providers.azure.state import BlobState

    workspace_exists = False
    store = BlobState("story", lambda: container if workspace_exists else None,
                      "amlctl-state/story.json", tmp_path, "test blob of story", LEASE)
    blob = container.get_blob_client("amlctl-state/story.json")
    key = store.fingerprint_key  # the plan already used it
    with store.lock("amlctl apply") as lock_id:
        assert read_lock(tmp_path)["id"] == lock_id  # a local lock meanwhile
        entry = store.begin("apply-1", "workspace", "create")
        assert not blob.exists()
        workspace_exists = True  # the step created it
        store.end(entry, True)
        props = blob.get_blob_properties()
        assert props.lease.state == "leased"
        assert json.loads(props.metadata["amlctl_lock"])["id"] == lock_id
        store.record_applied("workspace", {"location": "westeurope"})
    assert blob.get_blob_properties().lease.state != "leased"
    stored = _stored(container)
    assert set(stored["applied"]) == {"workspace"}
    assert [e["state"] for e in stored["journal"]] == ["done"]
    assert _store(container, tmp_path / "other").fingerprint_key == key


def test_a_state_block_with_an_account_key(fake: FakeAzure, token_auth: Any, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """`state:` names another account: amlctl uses AMLCTL_STATE_ACCESS_KEY for it."""
    from azurite import STATE_ACCOUNT, STATE_ACCOUNT_KEY

    from amlctl.providers.azure.provider import AzureProvider

    name = f"tfstate-{uuid.uuid4().hex[:8]}"
    state_container(name).create_container()
    monkeypatch.setenv("AMLCTL_STATE_ACCESS_KEY", STATE_ACCOUNT_KEY)
    provider = AzureProvider({"name": "ws", "subscription_id": "s", "resource_group": "rg",
                              "location": "westeurope"}, "story", tmp_path, auth=token_auth,
                             cloud="AzureCloud")
    provider.state_config = {"account": STATE_ACCOUNT, "container": name,
                             "key": "vision/story.json", "endpoint": "core.windows.net"}
    store = provider.state_store()
    assert store.location == (f"https://{STATE_ACCOUNT}.blob.core.windows.net/{name}/"
                              "vision/story.json")
    with store.lock("amlctl apply"):
        store.record_applied("workspace", {"location": "westeurope"})
    stored = json.loads(state_container(name).download_blob("vision/story.json").readall())
    assert set(stored["applied"]) == {"workspace"}
    provider.state_config = {**provider.state_config, "container": "no-such-container"}
    with pytest.raises(StateError, match="the container does not exist"):
        provider.state_store().applied()


def test_a_retried_state_write_whose_answer_was_lost_is_accepted(container: Any,
                                                                 tmp_path: Path) -> None:
    """The state blob's retry policy resends a conditional write whose answer was lost on the
    way back (the transport drops it after Azurite applied the write): the retry gets 412,
    and the state recognises its own write instead of reporting another runner. A write
    another runner made in between is still refused."""
    from azure.core.exceptions import ServiceResponseError
    from azure.core.pipeline.transport import RequestsTransport
    from azureml._vendor.azure_storage.blob import BlobServiceClient
    from azurite import STATE_ACCOUNT, STATE_ACCOUNT_KEY

    from amlctl.providers.azure.sdk import state_blob_retry

    class LosesAnAnswer(RequestsTransport):
        """Delivers every request; loses the answer of the armed conditional state write."""

        def __init__(self) -> None:
            super().__init__()
            self.armed = False
            self.answers: list[int] = []  # statuses of conditional writes of the state blob

        def send(self, request: Any, **kwargs: Any) -> Any:
            response = super().send(request, **kwargs)
            if (request.method == "PUT" and "amlctl-state/" in request.url
                    and "comp=" not in request.url
                    and {"if-match", "if-none-match"} & {h.lower() for h in request.headers}):
                self.answers.append(response.status_code)
                if self.armed:
                    self.armed = False
                    raise ServiceResponseError("connection dropped before the answer")
            return response

    transport = LosesAnAnswer()
    lossy = BlobServiceClient(
        f"https://{STATE_ACCOUNT}.blob.core.windows.net", transport=transport,
        credential={"account_name": STATE_ACCOUNT, "account_key": STATE_ACCOUNT_KEY},
        retry_policy=state_blob_retry()).get_container_client(container.container_name)
    a = _store(lossy, tmp_path / "a")
    a.bind({"manifest": "amlctl.yaml"})
    transport.armed = True
    a.record_applied("compute.cpu", {"max_nodes": 2})  # creates the blob (If-None-Match: *)
    assert transport.answers == [201, 409]  # landed, then the retry found it existing
    assert _stored(container)["applied"]["compute.cpu"]["attrs"] == {"max_nodes": 2}
    transport.armed = True
    a.record_applied("compute.cpu", {"max_nodes": 3})  # If-Match: the ETag it read back
    assert transport.answers[2:] == [201, 412]  # landed, then the retry's ETag was stale
    assert _stored(container)["applied"]["compute.cpu"]["attrs"] == {"max_nodes": 3}
    a.record_applied("compute.cpu", {"max_nodes": 4})  # and it goes on from the blob's ETag
    assert _stored(container)["applied"]["compute.cpu"]["attrs"] == {"max_nodes": 4}

    b = _store(container, tmp_path / "b")
    b.record_applied("compute.gpu", {"max_nodes": 1})  # another runner writes meanwhile
    transport.armed = True
    with pytest.raises(StateError, match="changed since amlctl read it"):
        a.record_applied("compute.cpu", {"max_nodes": 5})
    assert "compute.gpu" in _stored(container)["applied"]
