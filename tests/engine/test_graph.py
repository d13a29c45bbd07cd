"""`amlctl graph` and the Mermaid picture of the Markdown plan: checked as graphs (which
nodes, which edges), parsed back from the text."""

from __future__ import annotations

import re
from pathlib import Path

from enginekit import Cli, write_basic

RUN = """\
runs:
  hello:
    experiment: train
    compute: cpu
    source_directory: src
    entry_script: train.py
    arguments: ["--data", {datastore: images, path: x}]
"""
# BASIC_MANIFEST plus a run reading from datastore.images: (first, then) pairs. A run waits
# for every upload (a script may read uploaded data amlctl cannot see it name).
EXPECTED_EDGES = {
    ("workspace", "compute.cpu"), ("workspace", "compute.gpu"),
    ("workspace", "datastore.images"), ("workspace", "upload.digits"),
    ("workspace", "experiment.train"), ("workspace", "run.hello"),
    ("compute.cpu", "run.hello"), ("experiment.train", "run.hello"),
    ("datastore.images", "run.hello"), ("upload.digits", "run.hello"),
}
NODES = {"workspace", "compute.cpu", "compute.gpu", "datastore.images", "upload.digits",
         "experiment.train", "run.hello"}


def with_run(project: Path) -> None:
    write_basic(project)
    (project / "src").mkdir()
    (project / "src" / "train.py").write_text("print('hi')\n")
    with (project / "amlctl.yaml").open("a") as manifest:
        manifest.write(RUN)


def parse_dot(text: str) -> tuple[set[str], set[tuple[str, str]]]:
    assert text.startswith("digraph amlctl {") and text.rstrip().endswith("}")
    nodes = set(re.findall(r'^  "([^"]+)" \[label=', text, re.M))
    edges = set(re.findall(r'^  "([^"]+)" -> "([^"]+)";$', text, re.M))
    return nodes, edges


def parse_mermaid(text: str) -> tuple[dict[str, str], set[tuple[str, str]]]:
    """(label by node, edges by label) of a flowchart."""
    lines = text.strip().splitlines()
    assert lines[0].strip() == "flowchart LR"
    labels = dict(re.findall(r'^\s*(n\d+)\["([^"]+)"\]', text, re.M))
    edges = {(labels[a], labels[b]) for a, b in re.findall(r"^\s*(n\d+) --> (n\d+)$", text, re.M)}
    return labels, edges


def test_graph_as_dot(project: Path, cli: Cli) -> None:
    with_run(project)
    result = cli("graph")
    assert result.code == 0, result.stderr
    nodes, edges = parse_dot(result.stdout)
    assert nodes == NODES
    assert edges == EXPECTED_EDGES


def test_graph_as_mermaid(project: Path, cli: Cli) -> None:
    with_run(project)
    result = cli("graph", "--format", "mermaid")
    assert result.code == 0, result.stderr
    labels, edges = parse_mermaid(result.stdout)
    assert set(labels.values()) == NODES
    assert edges == EXPECTED_EDGES


def test_graph_refuses_an_unknown_format(project: Path, cli: Cli) -> None:
    with_run(project)
    result = cli("graph", "--format", "png")
    assert result.code == 1
    assert "--format 'png': expected dot or mermaid" in result.stderr


def mermaid_block(markdown: str) -> str:
    blocks = re.findall(r"```mermaid\n(.*?)```", markdown, re.S)
    assert len(blocks) == 1, markdown
    return blocks[0]


def test_markdown_plan_draws_what_changes(project: Path, cli: Cli) -> None:
    with_run(project)
    first = cli("plan", "--format", "markdown")
    labels, edges = parse_mermaid(mermaid_block(first.stdout))
    assert set(labels.values()) == {f"+ {n}" for n in NODES}
    assert edges == {(f"+ {a}", f"+ {b}") for a, b in EXPECTED_EDGES}
    assert cli("apply", "--auto-approve").code == 0
    # a new VM size replaces the cluster; the run (same definition) and the rest stay
    manifest = project / "amlctl.yaml"
    manifest.write_text(manifest.read_text().replace("Standard_D2_v3", "Standard_D4_v3"))
    second = cli("plan", "--format", "markdown")
    labels, edges = parse_mermaid(mermaid_block(second.stdout))
    assert set(labels.values()) == {"-/+ compute.cpu"}
    assert edges == set()
    assert ":::replace" in mermaid_block(second.stdout)


def test_no_picture_without_changes(project: Path, cli: Cli) -> None:
    with_run(project)
    assert cli("apply", "--auto-approve").code == 0
    assert "```mermaid" not in cli("plan", "--format", "markdown").stdout
