"""The default output: a Rich table with the module hierarchy, then the totals.

User text (model label, names, types) goes in as ``Text`` through ``printable``: Rich markup is
never parsed from it, and an escape sequence in a name never reaches the terminal raw.

Numbers and shapes are never cut or wrapped: a cut ``85…`` or a shape over two lines reads as
another value. When the table is wider than the space it is given, the module names give way
(``…attention.self_attn``: the tail, which says what the module is, under its indentation,
which says where it is); when even that is not enough, the table runs wider than the space
rather than cut a number, and ``__rich_measure__`` says by how much."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from modelviz.core.formatting import inputs_label, inputs_text
from modelviz.escape import printable
from modelviz.features.summary.cells import (
    HEADERS,
    cells,
    column_keys,
    display_rows,
    footer_lines,
)
from modelviz.features.summary.options import TableOptions

if TYPE_CHECKING:  # the summary renders itself with this module (__str__)
    from modelviz.features.summary.summary import Summary

#: A name never gets shorter than its last dotted part (``…self_attn``), which says what the
#: module is; only a last part longer than this is cut, to its last characters, ellipsis
#: included. Where the names are then still too wide, the table runs wider instead.
MIN_NAME = 16
ELLIPSIS = "…"
#: Wider than this, a measurement is as good as unbounded.
UNBOUNDED = 1_000_000


def shorten(name: str, room: int) -> str:
    """``name`` in ``room`` cells: its last dotted parts that fit, after an ellipsis; never
    less than its last part (see ``MIN_NAME``)."""
    parts = name.split(".")
    last = cell_len(parts[-1]) + (1 if len(parts) > 1 else 0)
    room = max(room, min(last, MIN_NAME))
    if cell_len(name) <= room:
        return name
    tail = ""
    for part in reversed(parts):
        longer = f"{part}.{tail}" if tail else part
        if cell_len(longer) + 1 > room:
            break
        tail = longer
    if not tail:  # the last part alone is too long: keep its end
        tail = name[-(room - 1):]
        while cell_len(tail) > room - 1:  # wide characters take two cells
            tail = tail[1:]
    return ELLIPSIS + tail


@dataclass(frozen=True)
class _Line:
    """One row's cells, its name kept apart: the one cell that may be shortened."""

    indent: str
    name: str
    type: str
    bold: bool
    values: list[str]
    style: str

    def width(self, name: str) -> int:
        return cell_len(self.indent) + cell_len(name) + cell_len(self.type) + 3  # " (...)"

    def label(self, name: str) -> Text:
        label = Text(self.indent)
        label.append(name, style="bold" if self.bold else "")
        label.append(f" ({self.type})", style="dim")
        return label


class LayerTable:
    """The layer rows as a Rich renderable that fits the width it is rendered at, names first.

    Its measurement's minimum is its width with every name at its shortest, its maximum its
    width with whole names: a console at least the minimum wide shows every number whole."""

    def __init__(self, headers: list[str], right: list[bool], lines: list[_Line]) -> None:
        self.headers = headers
        self.right = right  # per value column: numbers to the right, shapes to the left
        self.lines = lines

    def table(self, room: int | None = None) -> Table:
        """The Rich table, names shortened to ``room`` cells for their whole label."""
        table = Table(header_style="bold", expand=False, show_edge=True, pad_edge=True)
        table.add_column(self.headers[0], no_wrap=True)
        for header, right in zip(self.headers[1:], self.right, strict=True):
            table.add_column(header, justify="right" if right else "left", no_wrap=True)
        for line in self.lines:
            name = line.name if room is None else shorten(
                line.name, room - (line.width(line.name) - cell_len(line.name)))
            table.add_row(line.label(name), *[Text(v) for v in line.values], style=line.style)
        return table

    def _natural(self, console: Console, options: ConsoleOptions) -> tuple[int, int]:
        """(the table's width with whole names, the part of it that is not the layer column)."""
        full = Measurement.get(console, options.update_width(UNBOUNDED), self.table()).maximum
        layer = max([cell_len(self.headers[0])] + [ln.width(ln.name) for ln in self.lines])
        return full, full - layer

    def _shortest(self) -> int:
        """The layer column's width with every name at its shortest."""
        return max([cell_len(self.headers[0])]
                   + [ln.width(shorten(ln.name, 0)) for ln in self.lines])

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        full, others = self._natural(console, options)
        return Measurement(min(full, others + self._shortest()), full)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        full, others = self._natural(console, options)
        if full <= options.max_width:
            table = self.table()
        else:
            table = self.table(room=options.max_width - others)
        # past max_width only when the shortest names still do not fit: never a cut number
        width = max(options.max_width, min(full, others + self._shortest()))
        yield from console.render(table, options.update_width(width))


def layer_table(summary: Summary, options: TableOptions) -> LayerTable:
    """The rows of ``summary`` as ``options`` choose them, ready to be fitted to a width."""
    keys = column_keys(options.columns)
    lines = []
    for row in display_rows(summary, options):
        c = cells(row, summary.totals.params, options.columns)
        lines.append(_Line("  " * (row.depth - 1), c.name, c.type, bool(row.record.children),
                           [c.values[k] for k in keys], "" if c.called else "dim italic"))
    return LayerTable([HEADERS["layer"]] + [HEADERS[k] for k in keys],
                      ["shape" not in str(k) for k in keys], lines)


def render_table(summary: Summary, options: TableOptions) -> Group:
    trace = summary.trace
    inputs = (inputs_label(summary.inputs) if summary.inputs else
              f"input {inputs_text(trace.inputs)}")
    title = f"{summary.model} ({trace.model_type}) · {inputs} · {trace.device}"
    # a line of its own, not the table's title, which Rich would wrap to the table's width
    footer = Table.grid(padding=(0, 2))
    footer.add_column()
    footer.add_column(justify="right", no_wrap=True)
    for label_text, value in footer_lines(summary.totals):
        footer.add_row(label_text, value)
    notes = [Text(f"* {printable(param)} is {printable(owner)}: counted once", style="dim")
             for param, owner in summary.shared_parameters()]
    notes += [Text(f"! not counted in FLOPs (no formula): {printable(op)} in "
                   f"{printable(', '.join(where))}", style="yellow")
              for op, where in summary.not_counted()]
    notes += [Text(f"i {printable(note)}", style="dim") for note in summary.storage_notes()]
    return Group(Text(printable(title), style="italic"), layer_table(summary, options), footer,
                 *notes)


def least_width(renderable: Group, console: Console) -> int:
    """The least width that shows the numbers and shapes of ``renderable`` whole: its layer
    table's, names at their shortest. Not the title's longest word (a model file's path): text
    lines wrap, and a table is not widened for them."""
    options = console.options.update_width(UNBOUNDED)
    return max((Measurement.get(console, options, item).minimum
                for item in renderable.renderables if isinstance(item, LayerTable)), default=0)


def plain_text(renderable: Group) -> str:
    """Render without colour, as wide as the content needs: for files and ``str()``."""
    import io

    # markup off: a string cell that holds "[/]" is text (see modelviz.cli._console.console)
    probe = Console(width=10_000, file=io.StringIO(), markup=False, emoji=False)
    width = probe.measure(renderable).maximum
    console = Console(width=max(40, width), file=io.StringIO(), color_system=None,
                      highlight=False, force_terminal=False, markup=False, emoji=False)
    console.print(renderable)
    output = console.file.getvalue()  # type: ignore[attr-defined]
    return "\n".join(line.rstrip() for line in output.splitlines()) + "\n"
