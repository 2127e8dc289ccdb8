"""``modelviz tensorboard`` for the terminal: what each TensorBoard tab will show."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table

from modelviz.escape import printable
from modelviz.features.tensorboard.log import TensorboardLog


def render_log(written: TensorboardLog, logdir: Path, *, graph: bool, histograms: bool) -> Table:
    """One row per tab that has something; the graph row says when it was not written."""
    table = Table(title=printable(f"TensorBoard log in {logdir}"), title_justify="left",
                  header_style="bold")
    table.add_column("Tab")
    table.add_column("What")
    if graph:
        table.add_row("Graphs", f"{written.graph_nodes:,} nodes" if written.graph_nodes
                      else "not written (see the note above)")
    if histograms:
        table.add_row("Histograms", f"{len(written.histograms)} parameter tensors")
    table.add_row("Images", printable(", ".join(f"activations/{name}" for name in written.images))
                  or "–")
    table.add_row("Scalars", ", ".join(written.scalars))
    table.add_row("Text", "summary (the layer table as Markdown)")
    return table
