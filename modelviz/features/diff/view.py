"""``modelviz diff`` as a Rich table or as Markdown to paste in a pull request.

Model labels, layer names and details come from the models: ``Text`` through ``printable`` for
the terminal (never Rich markup), ``md_code``/``md_text`` for the Markdown."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelviz.core.formatting import count, human
from modelviz.escape import md_code, md_text, printable
from modelviz.features.diff.compare import Change, LayerChange, ModelDiff
from modelviz.features.diff.memory import size_text

#: A profile diff shows this many modules, the biggest changes; the JSON has them all.
PROFILE_ROWS = 20
_EMPTY = {"summary": "No layer was added, removed or changed.",
          "memory": "No layer's memory changed."}


def _figure(metric: str, value: float) -> str:
    """A value in its metric's unit, which the metric's name says."""
    if metric.endswith("_mb"):
        return f"{value:,.2f}"
    if metric.endswith("_bytes"):
        return size_text(value)
    if metric.endswith("_ms"):
        return f"{value:,.3f}"
    if metric == "flops":
        return human(value)
    return count(int(value))


def _value(change: Change, value: float) -> str:
    return _figure(change.metric, value)


def _signed(metric: str, a: float, b: float) -> str:
    """``+1.50 MiB (+3.00%)``; ``=`` when nothing changed."""
    delta = b - a
    if delta == 0:
        return "="
    percent = "" if a == 0 else f" ({100.0 * delta / a:+.2f}%)"
    return f"{'+' if delta > 0 else '-'}{_figure(metric, abs(delta))}{percent}"


def _delta(change: Change) -> str:
    return _signed(change.metric, change.a, change.b)


def _style(delta: float) -> str:
    return "red" if delta > 0 else ("green" if delta < 0 else "dim")


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.3f}"


def _share(row: LayerChange) -> str:
    a, b = row.values["share"]
    return " → ".join("–" if v is None else f"{100 * v:.1f}%" for v in (a, b))


def _module_change(row: LayerChange, metric: str) -> str:
    a, b = row.values[metric]
    if a is None:
        return "added"
    if b is None:
        return "removed"
    return _signed(metric, a, b)


def _profile_table(diff: ModelDiff) -> list[Table | Text]:
    table = Table(header_style="bold")
    table.add_column("Layer (type)", no_wrap=True)
    table.add_column("A ms", justify="right")
    table.add_column("B ms", justify="right")
    table.add_column("Change", justify="right")
    table.add_column("Self ms change", justify="right")
    table.add_column("Share", justify="right")
    for row in diff.layers[:PROFILE_ROWS]:
        a, b = row.values["total_ms"]
        label = f"{printable(row.name)} ({printable(row.type)})"
        if row.details:
            label += f" [{printable('; '.join(row.details))}]"
        table.add_row(Text(label), _ms(a), _ms(b),
                      Text(_module_change(row, "total_ms"), style=_style((b or 0) - (a or 0))),
                      _module_change(row, "self_ms"), _share(row))
    parts: list[Table | Text] = [table]
    if len(diff.layers) > PROFILE_ROWS:
        parts.append(Text(_more(diff), style="dim"))
    return parts


def _more(diff: ModelDiff) -> str:
    return (f"… {len(diff.layers) - PROFILE_ROWS} more modules, with smaller changes "
            "(the JSON lists every module)")


def render_diff_table(diff: ModelDiff) -> Group:
    title = Text(f"{printable(diff.a)} → {printable(diff.b)}")
    totals = Table(title=title, title_justify="left", header_style="bold")
    totals.add_column("Total")
    totals.add_column("A", justify="right")
    totals.add_column("B", justify="right")
    totals.add_column("Change", justify="right")
    for change in diff.totals:
        totals.add_row(change.label, _value(change, change.a), _value(change, change.b),
                       Text(_delta(change), style=_style(change.delta)))
    for fact in diff.facts:
        totals.add_row(fact.label, Text(printable(fact.a_text)), Text(printable(fact.b_text)),
                       Text("changed" if fact.changed else "=",
                            style="yellow" if fact.changed else "dim"))
    parts: list[Table | Text] = [totals]
    parts += [Text(f"note: {printable(note)}", style="dim") for note in diff.notes]
    if diff.kind == "profile":
        parts += _profile_table(diff)
    elif diff.layers:
        layers = Table(header_style="bold")
        layers.add_column("Layer", no_wrap=True)
        layers.add_column("Change")
        layers.add_column("Details")
        colours = {"added": "green", "removed": "red", "changed": "yellow"}
        for layer in diff.layers:
            layers.add_row(Text(printable(layer.name) or "(whole model)"),
                           Text(layer.kind, style=colours[layer.kind]),
                           Text(printable("; ".join(layer.details))))
        parts.append(layers)
    else:
        parts.append(Text(_EMPTY[diff.kind], style="dim"))
    return Group(*parts)


def _profile_markdown(diff: ModelDiff) -> list[str]:
    lines = ["| Layer (type) | A ms | B ms | Change | Self ms change | Share |",
             "| :--- | ---: | ---: | ---: | ---: | ---: |"]
    for row in diff.layers[:PROFILE_ROWS]:
        a, b = row.values["total_ms"]
        label = f"{md_code(row.name)} ({md_text(row.type)})"
        if row.details:
            label += f" ({md_text('; '.join(row.details))})"
        lines.append(f"| {label} | {_ms(a)} | {_ms(b)} | {_module_change(row, 'total_ms')} | "
                     f"{_module_change(row, 'self_ms')} | {_share(row)} |")
    if len(diff.layers) > PROFILE_ROWS:
        lines += ["", md_text(_more(diff))]
    return lines


def render_diff_markdown(diff: ModelDiff) -> str:
    lines = [f"### {md_code(diff.a, table=False)} → {md_code(diff.b, table=False)}", "",
             "| Total | A | B | Change |", "| :--- | ---: | ---: | ---: |"]
    for change in diff.totals:
        lines.append(f"| {change.label} | {_value(change, change.a)} | "
                     f"{_value(change, change.b)} | {_delta(change)} |")
    for fact in diff.facts:
        lines.append(f"| {fact.label} | {md_text(fact.a_text)} | {md_text(fact.b_text)} | "
                     f"{'changed' if fact.changed else '='} |")
    lines.append("")
    if diff.notes:
        lines += [*(f"- note: {md_text(note)}" for note in diff.notes), ""]
    if diff.kind == "profile":
        lines += _profile_markdown(diff)
    elif diff.layers:
        lines += ["| Layer | Change | Details |", "| :--- | :--- | :--- |"]
        for layer in diff.layers:
            details = md_text("; ".join(layer.details))
            name = md_code(layer.name) if layer.name else "(whole model)"
            lines.append(f"| {name} | {layer.kind} | {details} |")
    else:
        lines.append(_EMPTY[diff.kind])
    return "\n".join(lines) + "\n"
