"""The Azure ML workspace: open it, create it when the manifest asks, keep its tags."""

from __future__ import annotations

import difflib
import logging
from collections.abc import Iterable
from typing import Any

from amlctl.errors import ProviderError
from amlctl.providers.azure import sdk
from amlctl.providers.azure.retry import DEFAULT_POLICY, AzureCallError, RetryPolicy, call
from amlctl.providers.base import OWNER_TAG

log = logging.getLogger("amlctl.azure.workspace")
# Tags the SDK puts on a workspace it creates; not the user's, so never a difference.
SDK_TAGS = frozenset({"createdByToolkit"})


def _not_found(err: AzureCallError) -> bool:
    text = str(err).lower()
    return err.status == 404 or "not found" in text or "could not be found" in text


def open_workspace(attrs: dict[str, Any], auth: Any, cloud: str,
                   policy: RetryPolicy = DEFAULT_POLICY) -> Any | None:
    """The SDK Workspace named by the manifest, or None when it does not exist (yet)."""
    s = sdk.load()
    try:
        return call(f"opening workspace {attrs['name']}", lambda: s.Workspace.get(
            attrs["name"], auth=auth, subscription_id=attrs["subscription_id"],
            resource_group=attrs["resource_group"], cloud=cloud), policy)
    except AzureCallError as e:
        if _not_found(e):
            return None
        raise


def creation_notes(attrs: dict[str, Any], auth: Any,
                   policy: RetryPolicy = DEFAULT_POLICY) -> list[str]:
    """What creating the manifest's workspace means, in words: a new workspace (with new
    storage, key vault and insights), and which workspaces the resource group already has."""
    s = sdk.load()
    group = attrs["resource_group"]
    try:
        found = call(f"listing workspaces of resource group {group}", lambda: s.Workspace.list(
            attrs["subscription_id"], auth=auth, resource_group=group), policy)
    except AzureCallError as e:
        if not _not_found(e):  # e.g. no right to list: the plan goes on without the names
            log.info("cannot list the workspaces of %s: %s", group, e)
            return describe_creation(attrs, [])
        return describe_creation(attrs, None)
    return describe_creation(attrs, found or {})


def describe_creation(attrs: dict[str, Any], existing: Iterable[str] | None) -> list[str]:
    """The plan's notes on creating the workspace `attrs` names, given the workspaces its
    resource group has (None: the resource group does not exist). Shared by both SDKs."""
    name, group = attrs["name"], attrs["resource_group"]
    if existing is None:
        if attrs.get("create_resource_group"):
            return [f"resource group {group!r} does not exist either: both are created"]
        return [f"resource group {group!r} does not exist, and create_resource_group is not "
                "set: apply will fail; create the group or set create_resource_group: true"]
    notes = [f"workspace {name!r} does not exist in resource group {group!r}: a NEW "
             "workspace will be created, with its own storage account, key vault and "
             "application insights"]
    names = sorted(existing)
    if names:
        close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        notes.append(f"the resource group has {len(names)} workspace"
                     f"{'s' if len(names) != 1 else ''}: {', '.join(names)}{guess}")
    return notes


def create_workspace(attrs: dict[str, Any], auth: Any, stack: str, create_resource_group: bool,
                     policy: RetryPolicy = DEFAULT_POLICY) -> Any:
    """Create the workspace (ARM template deployment, several minutes) tagged as this stack's.

    exist_ok makes a re-run after an interrupted apply pick up the finished workspace.
    """
    s = sdk.load()
    tags = {**(attrs.get("tags") or {}), OWNER_TAG: stack}
    with sdk.captured_output():
        return call(f"creating workspace {attrs['name']}", lambda: s.Workspace.create(
            name=attrs["name"], auth=auth, subscription_id=attrs["subscription_id"],
            resource_group=attrs["resource_group"], location=attrs["location"],
            create_resource_group=create_resource_group, tags=tags, exist_ok=True,
            show_output=False), policy)  # True polls the deployment every 5 s to print it


def read(ws: Any) -> tuple[dict[str, Any], str | None]:
    """Workspace attributes in manifest vocabulary, and its owner stack."""
    tags = {k: v for k, v in (ws.tags or {}).items() if k not in SDK_TAGS}
    owner = tags.pop(OWNER_TAG, None)
    return ({"name": ws.name, "subscription_id": ws.subscription_id,
             "resource_group": ws.resource_group, "location": ws.location, "tags": tags}, owner)


def set_tags(ws: Any, tags: dict[str, str], owner: str | None,
             policy: RetryPolicy = DEFAULT_POLICY) -> None:
    """Replace the workspace tags (the owner tag is kept or set as given)."""
    wanted = dict(tags)
    if owner:
        wanted[OWNER_TAG] = owner
    call(f"updating tags of workspace {ws.name}", lambda: ws.update(tags=wanted), policy)
    call(f"reading workspace {ws.name}", ws.get_details, policy)  # the SDK caches tags


def delete_workspace(ws: Any, policy: RetryPolicy = DEFAULT_POLICY) -> None:
    """Delete the workspace itself (its storage, key vault and insights stay: they may hold
    data)."""
    with sdk.captured_output():
        call(f"deleting workspace {ws.name}",
             lambda: ws.delete(delete_dependent_resources=False, no_wait=False), policy)


def require(ws: Any | None, name: str) -> Any:
    """The workspace, or an error saying it must be applied first."""
    if ws is None:
        raise ProviderError(f"workspace {name!r} does not exist yet; apply the workspace first")
    return ws
