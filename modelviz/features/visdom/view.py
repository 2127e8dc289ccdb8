"""``modelviz visdom`` for the terminal: the windows pushed, by kind."""

from __future__ import annotations

from rich.table import Table

from modelviz.escape import printable
from modelviz.features.visdom.push import VisdomPush


def render_push(pushed: VisdomPush) -> Table:
    """One row per kind of window."""
    table = Table(title=printable(f"Visdom environment {pushed.env}"),
                  title_justify="left", header_style="bold")
    table.add_column("Window")
    table.add_column("What")
    table.add_row("totals, layers", "the totals and the layer table (HTML)")
    graph = [w for w, what in pushed.windows.items() if what == "module graph"]
    table.add_row("module graph", "SVG" if graph else "not pushed (see the note above)")
    table.add_row("activations", printable(", ".join(pushed.images)) or "–")
    table.add_row("parameters", f"{len(pushed.histograms)} histograms (bar charts)"
                  if pushed.histograms else "–")
    return table
