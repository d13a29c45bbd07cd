"""A dependency graph as Graphviz DOT or as a Mermaid flowchart (GitHub renders Mermaid)."""

from __future__ import annotations

from collections.abc import Mapping

from amlctl.engine.graph import Graph

# Mermaid classes by plan action symbol: what the Markdown plan colours each node with.
_CLASSES = {
    "+": ("create", "fill:#e6ffed,stroke:#28a745"),
    "~": ("update", "fill:#fff8c5,stroke:#b08800"),
    "-/+": ("replace", "fill:#ffebe9,stroke:#d73a49"),
    "-": ("destroy", "fill:#ffebe9,stroke:#d73a49,stroke-dasharray:4"),
}


def to_dot(graph: Graph, labels: Mapping[str, str] | None = None) -> str:
    """Graphviz DOT, edges pointing from what comes first to what depends on it."""
    lines = ["digraph amlctl {", "  rankdir=LR;", "  node [shape=box];"]
    for node in graph.nodes:
        label = (labels or {}).get(node, node)
        lines.append(f'  "{node}" [label="{label}"];')
    lines += [f'  "{a}" -> "{b}";' for a, b in graph.edges]
    lines.append("}")
    return "\n".join(lines) + "\n"


def to_mermaid(graph: Graph, actions: Mapping[str, str] | None = None) -> str:
    """A Mermaid `flowchart LR`; with `actions` (address -> plan symbol) each node shows its
    symbol and is coloured by it."""
    ids = {node: f"n{i}" for i, node in enumerate(graph.nodes)}
    lines = ["flowchart LR"]
    for node in graph.nodes:
        symbol = (actions or {}).get(node)
        label = f"{symbol} {node}" if symbol else node
        css = f":::{_CLASSES[symbol][0]}" if symbol in _CLASSES else ""
        lines.append(f'  {ids[node]}["{label}"]{css}')
    lines += [f"  {ids[a]} --> {ids[b]}" for a, b in graph.edges]
    used = {(actions or {}).get(n) for n in graph.nodes}
    lines += [f"  classDef {name} {style}" for symbol, (name, style) in _CLASSES.items()
              if symbol in used]
    return "\n".join(lines) + "\n"
