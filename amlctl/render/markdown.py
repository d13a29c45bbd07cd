"""The plan as Markdown, for a pull-request comment."""

from __future__ import annotations

from amlctl.engine.plan import Plan
from amlctl.render.graph import to_mermaid
from amlctl.render.human import render_plan


def render_markdown(plan: Plan) -> str:
    """A heading with the summary, a table of changes, and the full text plan folded."""
    counts = plan.counts()
    summary = (f"{counts['add']} to add, {counts['change']} to change, "
               f"{counts['destroy']} to destroy")
    lines = [f"### amlctl plan: `{plan.stack}` ({plan.backend})", ""]
    if not plan.has_changes:
        lines.append("**No changes.** The workspace matches the manifest.")
    else:
        lines += [f"**Plan:** {summary}.", "", "| | Resource | Action |", "|---|---|---|"]
        for change in plan.actionable:
            verb = {"+": "create", "~": "update in place", "-/+": "replace",
                    "-": "destroy"}[change.action.value]
            if change.kind == "run":
                verb = "cancel" if change.action.value == "-" else "submit"
            lines.append(f"| `{change.action.value}` | `{change.address}` | {verb} |")
        lines += ["", "```mermaid", _picture(plan).rstrip(), "```"]
    if plan.drift:
        lines += ["", f"**Drift:** {len(plan.drift)} object(s) changed outside amlctl."]
    lines += ["", "<details><summary>Full plan</summary>", "", "```diff",
              render_plan(plan).rstrip(), "```", "", "</details>", ""]
    return "\n".join(lines)


def _picture(plan: Plan) -> str:
    """A Mermaid picture of what changes: changed resources, coloured by action, with the
    dependencies between them (GitHub draws it in the pull-request comment)."""
    from amlctl.engine.graph import Graph

    changed = [c.address for c in plan.actionable]
    graph = Graph(tuple(changed), plan.edges).restricted(changed)
    return to_mermaid(graph, {c.address: c.action.value for c in plan.actionable})
