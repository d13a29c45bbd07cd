"""The migration report: what became of every field of every input file.

A report is plain data (entries), rendered as text for the terminal or as Markdown for a file
or a pull request. Entries never hold secret values: converters write only field names, paths
and advice into them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum


class Outcome(StrEnum):
    """What became of one input field."""

    MAPPED = "mapped"
    DROPPED = "dropped"
    ACTION = "needs action"


@dataclass(frozen=True)
class Entry:
    """One input field (or subtree) and what became of it.

    `field` is the path in the input file (`properties.scaleSettings.manual.targetNodeCount`);
    an entry on a mapping or list covers everything below it. `target` is the manifest path
    the value went to, if any; `note` says why, or what to do instead. A `remark` is about a
    field (a default it lacked, a consequence) without accounting for what is below it.
    """

    source: str
    field: str
    outcome: Outcome
    target: str | None = None
    note: str = ""
    remark: bool = False

    def covers(self, path: str) -> bool:
        """True if this entry accounts for the input field `path` (itself or an ancestor)."""
        if self.remark:
            return False
        if path == self.field:
            return True
        return path.startswith(self.field + ".") or path.startswith(self.field + "[")


@dataclass
class SourceSummary:
    """A heading for the entries of one input file: its kind and the resource it became."""

    source: str
    kind: str
    became: str


@dataclass
class Report:
    """Every entry of one conversion, in the order the converter made them."""

    entries: list[Entry] = field(default_factory=list)
    sources: list[SourceSummary] = field(default_factory=list)

    def add(self, source: str, field_path: str, outcome: Outcome, target: str | None = None,
            note: str = "", *, remark: bool = False) -> None:
        """Record what became of `field_path` of `source` (or, as a remark, a note on it)."""
        self.entries.append(Entry(source, field_path, outcome, target, note, remark))

    def for_source(self, source: str) -> list[Entry]:
        """The entries of one input file."""
        return [e for e in self.entries if e.source == source]

    def covered(self, source: str, path: str) -> bool:
        """True if some entry of `source` speaks for field `path`."""
        return any(e.covers(path) for e in self.entries if e.source == source)

    def count(self, outcome: Outcome) -> int:
        """How many entries have `outcome`."""
        return sum(1 for e in self.entries if e.outcome is outcome)

    def actions(self) -> list[Entry]:
        """The entries a user must act on."""
        return [e for e in self.entries if e.outcome is Outcome.ACTION]

    def summary(self) -> str:
        """One line: how many fields were mapped, dropped, need action."""
        files = len(self.sources)
        return (f"{files} file{'s' if files != 1 else ''}: "
                f"{self.count(Outcome.MAPPED)} mapped, {self.count(Outcome.DROPPED)} dropped, "
                f"{self.count(Outcome.ACTION)} need action")

    def to_text(self) -> str:
        """The report for a terminal."""
        return "\n".join(_text_lines(self)) + "\n"

    def to_markdown(self) -> str:
        """The report as Markdown: a checklist of actions, then a table per input file."""
        return "\n".join(_markdown_lines(self)) + "\n"


def _groups(report: Report) -> Iterator[tuple[str, str, list[Entry]]]:
    known = {s.source for s in report.sources}
    for summary in report.sources:
        heading = f"{summary.kind} -> {summary.became}"
        yield summary.source, heading, report.for_source(summary.source)
    # Entries about the command line or the whole conversion have no input file of their own.
    others = [e for e in report.entries if e.source not in known]
    for source in dict.fromkeys(e.source for e in others):
        yield source, "", [e for e in others if e.source == source]


def _text_lines(report: Report) -> Iterable[str]:
    yield "Batch AI migration report"
    yield report.summary() + "."
    for source, heading, entries in _groups(report):
        yield ""
        yield f"{source}" + (f" ({heading})" if heading else "")
        for entry in entries:
            target = f" -> {entry.target}" if entry.target else ""
            note = f": {entry.note}" if entry.note else ""
            yield f"  [{entry.outcome.value}] {entry.field}{target}{note}"


def _markdown_lines(report: Report) -> Iterable[str]:
    yield "# Batch AI migration report"
    yield ""
    yield report.summary() + "."
    actions = report.actions()
    if actions:
        yield ""
        yield "## To do"
        yield ""
        for entry in actions:
            yield f"- [ ] `{entry.source}` `{entry.field}`: {_md_text(entry.note)}"
    for source, heading, entries in _groups(report):
        yield ""
        yield f"## `{source}`" + (f" ({_md_text(heading)})" if heading else "")
        yield ""
        yield "| Field | Result | Manifest | Notes |"
        yield "| --- | --- | --- | --- |"
        for entry in entries:
            target = f"`{_md_code(entry.target)}`" if entry.target else ""
            yield (f"| `{_md_code(entry.field)}` | {entry.outcome.value} | {target} "
                   f"| {_md_cell(entry.note)} |")


def _md_code(text: str) -> str:
    """Text for a code span inside a table cell: one line, pipes escaped."""
    return text.replace("\n", " ").replace("|", "\\|")


def _md_text(text: str) -> str:
    """Plain Markdown text: one line; `<NAME>` placeholders must not read as HTML tags."""
    return text.replace("\n", " ").replace("<", "&lt;")


def _md_cell(text: str) -> str:
    """Plain Markdown text inside a table cell."""
    return _md_text(text).replace("|", "\\|")
