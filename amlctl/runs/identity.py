"""A run's identity: a digest of its source snapshot and a hash of everything defining it.

The engine submits a run when no run with its `spec_hash` exists in the experiment; the same
definition over the same source gives the same hash on any machine and in any process. Secret
values are not part of it. `run_id` derives the id a submission asks for from it, where the
backend lets the client choose one (exactly-once submission).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from amlctl.runs.snapshot import source_files

SPEC_HASH_LENGTH = 16
_CHUNK = 1 << 20


def source_digest(source_dir: Path) -> str:
    """sha256 (hex) over the snapshot's relative paths and contents, in path order.

    Uses the snapshot's own file selection (`.amlignore`, `__pycache__` ...), so a change to
    an ignored file changes nothing.
    """
    digest = hashlib.sha256()
    for relpath in source_files(source_dir):
        path = source_dir / relpath
        digest.update(relpath.encode() + b"\0")
        digest.update(str(path.stat().st_size).encode() + b"\0")
        with path.open("rb") as stream:
            while chunk := stream.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def canonical_json(value: Any) -> str:
    """One text per value: sorted keys, no spaces, non-ASCII kept, tuples as lists."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str)


SECRET_MARK = "(sensitive)"


def without_secrets(value: Any, secret_paths: Iterable[str], path: str = "") -> Any:
    """`value` with the values at `secret_paths` (dotted, e.g. `environment.env_vars.TOKEN`)
    replaced by a mark: the secret's presence counts, its value does not."""
    paths = secret_paths if isinstance(secret_paths, frozenset) else frozenset(secret_paths)
    if path in paths:
        return SECRET_MARK
    if isinstance(value, dict):
        return {k: without_secrets(v, paths, f"{path}.{k}" if path else str(k))
                for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [without_secrets(v, paths, f"{path}.{i}" if path else str(i))
                for i, v in enumerate(value)]
    return value


def spec_hash(definition: dict[str, Any], source_digest: str,
              secret_paths: Iterable[str] = ()) -> str:
    """The run's identity: a short hex hash of its definition and its source digest.

    Secret values (at `secret_paths`) are left out, so rotating a key does not make a new
    definition and does not train again; adding or removing a secret variable does.
    """
    definition = without_secrets(definition, secret_paths)
    text = canonical_json({"definition": definition, "source": source_digest})
    return hashlib.sha256(text.encode()).hexdigest()[:SPEC_HASH_LENGTH]


RUN_ID_MAX = 250  # AML run ids: letters, digits, '_' and '-', at most 255 characters


def run_id(stack: str, name: str, spec_hash: str, supersedes: str | None = None) -> str:
    """The id a backend that lets the client choose gives a submission: the same stack, run
    name and spec hash give the same id, so a repeated create collides instead of starting a
    second run. `supersedes` (the run an explicit resubmission replaces) makes a new id for
    each deliberate resubmission, still the same for every runner replacing the same run."""
    base = re.sub(r"[^A-Za-z0-9_-]", "_", f"amlctl_{stack}_{name}")
    suffix = spec_hash
    if supersedes:
        suffix += "_" + hashlib.sha256(supersedes.encode()).hexdigest()[:8]
    return f"{base[:RUN_ID_MAX - len(suffix) - 1]}_{suffix}"
