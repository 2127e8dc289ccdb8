"""``modelviz diff`` as a Rich table or as Markdown to paste in a pull request."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelviz.model_diff import Change, ModelDiff
from modelviz.render.text import count, human


def _value(change: Change, value: float) -> str:
    if change.metric.endswith("_mb"):
        return f"{value:,.2f}"
    if change.metric == "flops":
        return human(value)
    return count(int(value))


def _delta(change: Change) -> str:
    if change.delta == 0:
        return "="
    sign = "+" if change.delta > 0 else "-"
    magnitude = abs(change.delta)
    text = (f"{magnitude:,.2f}" if change.metric.endswith("_mb")
            else human(magnitude) if change.metric == "flops" else count(int(magnitude)))
    percent = "" if change.percent is None else f" ({change.percent:+.2f}%)"
    return f"{sign}{text}{percent}"


def render_diff_table(diff: ModelDiff) -> Group:
    totals = Table(title=f"{diff.a} → {diff.b}", title_justify="left", header_style="bold")
    totals.add_column("Total")
    totals.add_column("A", justify="right")
    totals.add_column("B", justify="right")
    totals.add_column("Change", justify="right")
    for change in diff.totals:
        style = "red" if change.delta > 0 else ("green" if change.delta < 0 else "dim")
        totals.add_row(change.label, _value(change, change.a), _value(change, change.b),
                       Text(_delta(change), style=style))
    parts: list[Table | Text] = [totals]
    if diff.layers:
        layers = Table(header_style="bold")
        layers.add_column("Layer", no_wrap=True)
        layers.add_column("Change")
        layers.add_column("Details")
        colours = {"added": "green", "removed": "red", "changed": "yellow"}
        for layer in diff.layers:
            layers.add_row(layer.name, Text(layer.kind, style=colours[layer.kind]),
                           "; ".join(layer.details))
        parts.append(layers)
    else:
        parts.append(Text("No layer was added, removed or changed.", style="dim"))
    return Group(*parts)


def render_diff_markdown(diff: ModelDiff) -> str:
    lines = [f"### `{diff.a}` → `{diff.b}`", "", "| Total | A | B | Change |",
             "| :--- | ---: | ---: | ---: |"]
    for change in diff.totals:
        lines.append(f"| {change.label} | {_value(change, change.a)} | "
                     f"{_value(change, change.b)} | {_delta(change)} |")
    lines.append("")
    if diff.layers:
        lines += ["| Layer | Change | Details |", "| :--- | :--- | :--- |"]
        for layer in diff.layers:
            details = "; ".join(layer.details).replace("|", "\\|")
            lines.append(f"| `{layer.name}` | {layer.kind} | {details} |")
    else:
        lines.append("No layer was added, removed or changed.")
    return "\n".join(lines) + "\n"
