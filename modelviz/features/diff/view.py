"""``modelviz diff`` as a Rich table or as Markdown to paste in a pull request.

Model labels, layer names and details come from the models: ``Text`` through ``printable`` for
the terminal (never Rich markup), ``md_code``/``md_text`` for the Markdown."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelviz.core.formatting import count, human
from modelviz.escape import md_code, md_text, printable
from modelviz.features.diff.compare import Change, ModelDiff


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
    title = Text(f"{printable(diff.a)} → {printable(diff.b)}")
    totals = Table(title=title, title_justify="left", header_style="bold")
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
            layers.add_row(Text(printable(layer.name)),
                           Text(layer.kind, style=colours[layer.kind]),
                           Text(printable("; ".join(layer.details))))
        parts.append(layers)
    else:
        parts.append(Text("No layer was added, removed or changed.", style="dim"))
    return Group(*parts)


def render_diff_markdown(diff: ModelDiff) -> str:
    lines = [f"### {md_code(diff.a, table=False)} → {md_code(diff.b, table=False)}", "",
             "| Total | A | B | Change |", "| :--- | ---: | ---: | ---: |"]
    for change in diff.totals:
        lines.append(f"| {change.label} | {_value(change, change.a)} | "
                     f"{_value(change, change.b)} | {_delta(change)} |")
    lines.append("")
    if diff.layers:
        lines += ["| Layer | Change | Details |", "| :--- | :--- | :--- |"]
        for layer in diff.layers:
            details = md_text("; ".join(layer.details))
            lines.append(f"| {md_code(layer.name)} | {layer.kind} | {details} |")
    else:
        lines.append("No layer was added, removed or changed.")
    return "\n".join(lines) + "\n"
