"""Per-kind handlers behind the provider interface: the object operations written once.

A backend gives one handler per kind it manages (`KindHandler`: read, create, update, delete,
adopt for that kind) and inherits `HandlerProvider`, which parses each address once, checks
what is generic (fields that cannot change in place, adoption of an object another stack
owns) and calls the kind's handler. A new kind is a new handler in the backend's table; a
new backend is a package of handlers plus one line in `amlctl.providers.BACKENDS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Protocol

from amlctl.errors import ProviderError, UsageError
from amlctl.providers.base import LiveObject, Provider
from amlctl.providers.resources import KIND_LIST, Address

# What a handler reads: name -> (attributes in manifest vocabulary, owner stack or None).
Found = dict[str, tuple[dict[str, Any], str | None]]


class KindHandler(Protocol):
    """One kind of object on one backend. Addresses arrive parsed; secrets travel apart from
    attributes (which hold only their fingerprints)."""

    updatable: frozenset[str]  # fields changed in place; any other change replaces

    def read_all(self) -> Found:
        """Every object of this kind, owned or not, by name ('' for the workspace)."""
        ...

    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]
               ) -> None:
        """Create the object, owned by the stack; an existing one is updated (idempotent)."""
        ...

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        """Change the `changed` fields in place (all of them in `updatable`)."""
        ...

    def delete(self, address: Address, include_data: bool) -> None:
        """Delete the object and wait until it is gone; no error when it already is."""
        ...

    def adopt(self, address: Address, live: LiveObject) -> None:
        """Mark `live`, an existing unowned (or already own) object, as the stack's."""
        ...

    def preflight(self, address: Address, attrs: dict[str, Any]) -> list[str]:
        """Problems a create would meet that the plan can tell beforehand."""
        ...

    def create_notes(self, address: Address, attrs: dict[str, Any]) -> list[str]:
        """What the plan should say about creating the object beyond its attributes."""
        ...


class Handler(ABC):
    """A KindHandler with defaults: nothing updates in place, adoption is refused, no
    preflight problems, no notes. Subclasses implement read_all, create and delete, and
    override what else their kind supports."""

    updatable: frozenset[str] = frozenset()

    @abstractmethod
    def read_all(self) -> Found:
        """Every object of this kind, owned or not, by name ('' for the workspace)."""

    @abstractmethod
    def create(self, address: Address, attrs: dict[str, Any], secrets: dict[str, str]
               ) -> None:
        """Create the object, owned by the stack; an existing one is updated (idempotent)."""

    @abstractmethod
    def delete(self, address: Address, include_data: bool) -> None:
        """Delete the object and wait until it is gone; no error when it already is."""

    def update(self, address: Address, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        raise ProviderError(f"{address}: nothing of a {address.kind} changes in place")

    def adopt(self, address: Address, live: LiveObject) -> None:
        raise UsageError(f"{address}: cannot adopt a {address.kind}")

    def preflight(self, address: Address, attrs: dict[str, Any]) -> list[str]:
        return []

    def create_notes(self, address: Address, attrs: dict[str, Any]) -> list[str]:
        return []


class HandlerProvider(Provider):
    """A provider whose object operations go through its per-kind handlers."""

    # appended to "cannot change in place" (e.g. " on Azure ML")
    in_place_where: str = ""
    _handler_table: Mapping[str, KindHandler] | None = None

    @abstractmethod
    def make_handlers(self) -> Mapping[str, KindHandler]:
        """kind name -> its handler; called once per provider instance. A kind left out is
        one this backend does not manage."""

    @abstractmethod
    def workspace_exists(self) -> bool:
        """Whether the manifest's workspace exists (a delete is a no-op when it does not)."""

    def handler(self, kind: str) -> KindHandler | None:
        """The handler of `kind`, or None when this backend does not manage it."""
        if self._handler_table is None:
            self._handler_table = dict(self.make_handlers())
        return self._handler_table.get(kind)

    def _require_handler(self, address: Address, verb: str) -> KindHandler:
        found = self.handler(address.kind)
        if found is None:
            raise ProviderError(f"{address}: the {self.name} backend cannot {verb} objects of "
                                f"kind {address.kind!r}")
        return found

    def read_all(self) -> dict[str, LiveObject]:
        """Each kind's objects in dependency order; nothing when the workspace is missing."""
        out: dict[str, LiveObject] = {}
        for kind in KIND_LIST:
            handler = self.handler(kind.name)
            if handler is None:
                continue
            found = handler.read_all()
            if kind.singleton and not found:
                return {}  # no workspace: nothing else can exist
            for name, (attrs, owner) in found.items():
                address = str(Address(kind.name, "" if kind.singleton else name))
                out[address] = LiveObject(address, attrs, owner)
        return out

    def updatable_fields(self, kind: str) -> frozenset[str]:
        found = self.handler(kind)
        return found.updatable if found is not None else frozenset()

    def create(self, address: str, attrs: dict[str, Any], secrets: dict[str, str]) -> None:
        where = Address.parse(address)
        self._require_handler(where, "create").create(where, attrs, secrets)

    def update(self, address: str, attrs: dict[str, Any], changed: list[str],
               secrets: dict[str, str]) -> None:
        where = Address.parse(address)
        handler = self._require_handler(where, "update")
        refused = set(changed) - handler.updatable
        if refused:
            raise ProviderError(f"{address}: {', '.join(sorted(refused))} cannot change in "
                                f"place{self.in_place_where}")
        handler.update(where, attrs, changed, secrets)

    def delete(self, address: str, *, include_data: bool = False) -> None:
        where = Address.parse(address)
        handler = self._require_handler(where, "delete")
        if self.workspace_exists():
            handler.delete(where, include_data)

    def adopt(self, address: str) -> LiveObject:
        where = Address.parse(address)
        live = self.read_all().get(address)
        if live is None:
            raise UsageError(f"{address} does not exist in workspace {self.workspace['name']!r}")
        if live.owner not in (None, self.stack):
            raise UsageError(f"{address} belongs to stack {live.owner!r}")
        handler = self.handler(where.kind)
        if handler is None:
            raise UsageError(f"{address}: cannot adopt a {where.kind}")
        handler.adopt(where, live)
        return LiveObject(address, live.attrs, self.stack)

    def preflight(self, address: str, attrs: dict[str, Any]) -> list[str]:
        where = Address.parse(address)
        handler = self.handler(where.kind)
        return handler.preflight(where, attrs) if handler is not None else []

    def create_notes(self, address: str, attrs: dict[str, Any]) -> list[str]:
        where = Address.parse(address)
        handler = self.handler(where.kind)
        return handler.create_notes(where, attrs) if handler is not None else []
