"""A manifest with many resources of each kind, for counting the requests a plan makes."""

from __future__ import annotations

import re
import urllib.parse
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fake_service import FakeAzure

STACK = "scale"
RESOURCE_GROUP = "scale-rg"
WORKSPACE = "scale-ws"


def write_scale_manifest(folder: Path, fake: FakeAzure, *, computes: int, datastores: int,
                         uploads: int, runs: int) -> tuple[Path, str]:
    """`folder/amlctl.yaml` with that many computes, datastores, uploads and runs, their local
    folders, and the storage accounts the datastores name (in `fake`)."""
    key = fake.add_storage_account("scalestore", [f"c{i}" for i in range(datastores)])
    lines = [
        "version: 1", f"name: {STACK}",
        "workspace:", f"  name: {WORKSPACE}",
        '  subscription_id: "{{ env(\'AZURE_SUBSCRIPTION_ID\') }}"',
        f"  resource_group: {RESOURCE_GROUP}", "  location: westeurope",
        "computes:",
    ]
    lines += [f"  cpu{i}: {{vm_size: Standard_D2_v3, max_nodes: 2}}" for i in range(computes)]
    lines.append("datastores:" if datastores else "datastores: {}")
    lines += [f"  ds{i}: {{type: azure_blob, account_name: scalestore, container_name: c{i}, "
              "account_key: \"{{ secret_env('SCALE_KEY') }}\"}" for i in range(datastores)]
    lines.append("uploads:" if uploads else "uploads: {}")
    for i in range(uploads):
        data = folder / f"data{i}"
        data.mkdir(parents=True, exist_ok=True)
        for j in range(2):
            (data / f"part{j}.csv").write_text(f"{i},{j}\n")
        lines.append(f"  up{i}: {{datastore: default, src_dir: data{i}, target_path: up{i}}}")
    lines += ["experiments:", "  train: {}"]
    (folder / "src").mkdir(parents=True, exist_ok=True)
    (folder / "src" / "train.py").write_text("print('training')\n")
    lines.append("runs:" if runs else "runs: {}")
    lines += [f"  run{i}: {{experiment: train, compute: cpu{i % max(computes, 1)}, "
              f"source_directory: src, entry_script: train.py, arguments: [--seed, {i}]}}"
              for i in range(runs)]
    path = folder / "amlctl.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path, key


def noop_plan_requests(folder: Path, fake: Any, backend: str,
                       make_provider: Callable[[dict[str, Any], Path], Any],
                       setenv: Callable[[str, str], None], **counts: int) -> Counter[str]:
    """Apply a scale manifest of `counts` into `fake`, then count the requests of a no-change
    plan by a fresh provider and state (as a new process), by kind (see `request_kind`).
    `make_provider(workspace, state_dir)` builds the backend's provider; `setenv` sets the
    datastores' key (monkeypatch.setenv, or os.environ's)."""
    from amlctl.engine.executor import apply_plan
    from amlctl.engine.planner import Context, bind_state, make_plan
    from amlctl.manifest.loader import load_manifest
    from amlctl.providers.base import OWNER_TAG

    folder.mkdir()
    fake.add_workspace(RESOURCE_GROUP, WORKSPACE, tags={OWNER_TAG: STACK})
    path, key = write_scale_manifest(folder, fake, **counts)
    setenv("SCALE_KEY", key)
    loaded = load_manifest(path)
    state = folder / ".amlctl"
    workspace = loaded.manifest.workspace.model_dump()

    def context() -> Any:
        provider = make_provider(workspace, state)
        return bind_state(Context(loaded, provider, provider.state_store(), state, backend))

    ctx = context()
    result = apply_plan(ctx, make_plan(ctx))
    ctx.close()
    assert result.ok, result.failed
    with counted_requests() as seen:  # a fresh process's view: nothing read yet
        ctx = context()
        plan = make_plan(ctx)
    ctx.close()
    assert not plan.has_changes, [c.address for c in plan.actionable]
    return Counter(request_kind(method, url) for method, url in seen)


@contextmanager
def counted_requests() -> Iterator[list[tuple[str, str]]]:
    """Record (method, url) of every HTTP request any SDK sends meanwhile, where each goes
    on the wire: http.client's putrequest. The azureml SDK and the storage SDK send through
    `requests` (urllib3 on http.client), amlctl's own blob requests through its http.client
    pool transport, so ARM, Azure ML and blob (Azurite) requests are all seen."""
    import http.client

    seen: list[tuple[str, str]] = []
    real_putrequest = http.client.HTTPConnection.putrequest

    def putrequest(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        # a connection is given the path (and query) only; put the origin back for the record
        scheme = "https" if self.default_port == 443 else "http"  # urllib3's TLS ones too
        seen.append((method, url if "://" in url else f"{scheme}://{self.host}{url}"))
        return real_putrequest(self, method, url, *args, **kwargs)

    http.client.HTTPConnection.putrequest = putrequest  # type: ignore[method-assign]
    try:
        yield seen
    finally:
        http.client.HTTPConnection.putrequest = real_putrequest  # type: ignore[method-assign]


def request_kind(method: str, url: str) -> str:
    """A request by kind: `LIST <prefix>` for a blob listing, else method and path, with
    the workspace and the resources' numbers replaced (requests of one kind count together)."""
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    if query.get("comp") == "list":
        return f"LIST {_shape(query.get('prefix', ''))}"
    return f"{method} {_shape(urllib.parse.unquote(parts.path))}"


def _shape(path: str) -> str:
    path = re.sub(r"/subscriptions/[^/]+/resourceGroups/[^/]+/providers/[^/]+/workspaces/[^/]+",
                  "/WS", path)
    path = re.sub(r"/azureml-blobstore-[0-9a-f-]+", "/CONTAINER", path)
    return re.sub(r"\b(cpu|ds|up|run)\d+\b", r"\1N", path)
