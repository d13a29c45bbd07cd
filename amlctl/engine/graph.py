"""The dependency graph of a manifest, as plain data: which resource must exist before which.

An edge `(a, b)` means `a` comes first (`b` depends on it): apply creates in edge order and
deletes against it. `amlctl graph` draws it (render/graph.py); the Markdown plan draws the
part of it that changes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from amlctl.engine.address import sort_key
from amlctl.engine.desired import Desired


@dataclass(frozen=True)
class Graph:
    """Resources (addresses, in dependency order) and the edges between them."""

    nodes: tuple[str, ...]
    edges: tuple[tuple[str, str], ...]  # (first, then)

    def restricted(self, keep: Iterable[str]) -> Graph:
        """The subgraph on `keep`: an edge stays when both ends do."""
        wanted = set(keep)
        return Graph(tuple(n for n in self.nodes if n in wanted),
                     tuple((a, b) for a, b in self.edges if a in wanted and b in wanted))


def dependency_graph(desired: Mapping[str, Desired]) -> Graph:
    """The graph of a desired state (see desired.py): one edge per declared dependency."""
    nodes = tuple(sorted(desired, key=sort_key))
    edges = tuple(sorted(
        ((dep, address) for address, want in desired.items() for dep in want.deps
         if dep in desired),
        key=lambda e: (sort_key(e[1]), sort_key(e[0])),
    ))
    return Graph(nodes, edges)
