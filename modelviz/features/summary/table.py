"""The default output: a Rich table with the module hierarchy, then the totals.

User text (model label, names, types) goes in as ``Text`` through ``printable``: Rich markup is
never parsed from it, and an escape sequence in a name never reaches the terminal raw."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.table import Table
from rich.text import Text

from modelviz.core.formatting import inputs_label, inputs_text, totals_lines
from modelviz.escape import printable
from modelviz.features.summary.cells import HEADERS, cells, column_keys
from modelviz.features.summary.options import TableOptions

if TYPE_CHECKING:  # the summary renders itself with this module (__str__)
    from modelviz.features.summary.summary import Summary


def render_table(summary: Summary, options: TableOptions) -> Group:
    trace = summary.trace
    inputs = (inputs_label(summary.inputs) if summary.inputs else
              f"input {inputs_text(trace.inputs)}")
    title = f"{summary.model} ({trace.model_type}) · {inputs} · {trace.device}"
    # a line of its own, not the table's title, which Rich would wrap to the table's width
    table = Table(header_style="bold", expand=False, show_edge=True, pad_edge=True)
    keys = column_keys(options.columns)
    table.add_column(HEADERS["layer"], no_wrap=True)
    for key in keys:
        table.add_column(HEADERS[key], justify="left" if "shape" in str(key) else "right")
    for row in summary.rows(depth=options.depth, fold=options.fold):
        c = cells(row, summary.totals.params, options.columns)
        label = Text("  " * (row.depth - 1))
        label.append(c.name, style="bold" if row.record.children else "")
        label.append(f" ({c.type})", style="dim")
        style = "" if c.called else "dim italic"
        table.add_row(label, *[Text(c.values[k]) for k in keys], style=style)
    footer = Table.grid(padding=(0, 2))
    footer.add_column()
    footer.add_column(justify="right")
    for label_text, value in totals_lines(summary.totals):
        footer.add_row(label_text, value)
    notes = [Text(f"* {printable(param)} is {printable(owner)}: counted once", style="dim")
             for param, owner in summary.shared_parameters()]
    notes += [Text(f"! not counted in FLOPs (no formula): {printable(op)} in "
                   f"{printable(', '.join(where))}", style="yellow")
              for op, where in summary.not_counted()]
    return Group(Text(printable(title), style="italic"), table, footer, *notes)


def plain_text(renderable: Group) -> str:
    """Render without colour, as wide as the content needs: for files and ``str()``."""
    import io

    from rich.console import Console

    # markup off: a string cell that holds "[/]" is text (see modelviz.cli._console.console)
    probe = Console(width=10_000, file=io.StringIO(), markup=False, emoji=False)
    width = probe.measure(renderable).maximum
    console = Console(width=max(40, width), file=io.StringIO(), color_system=None,
                      highlight=False, force_terminal=False, markup=False, emoji=False)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in output.splitlines()) + "\n"
