"""``modelviz activations`` for the terminal: one row per measured output, and a verdict line."""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from modelviz.core.formatting import dims_text, inputs_label, stat_text
from modelviz.escape import printable
from modelviz.features.activations.stats import DEAD_THRESHOLD, ActivationReport, LayerStats


def _names(layers: list[str], limit: int = 5) -> str:
    shown = ", ".join(layers[:limit])
    return shown + (f" and {len(layers) - limit} more" if len(layers) > limit else "")


def _image_cell(layer: LayerStats) -> str:
    """✓ for ``<folder>/<layer name>.png``; the file name where the layer's name had to change
    to be one (``pool#2`` is ``pool_2.png``). Full paths are in --json."""
    if layer.image is None:
        return "–"
    return "✓" if layer.image.name == f"{layer.name}.png" else layer.image.name


def render_report(report: ActivationReport) -> RenderableType:
    """The Rich table: one row per measured output; dead rows yellow, non-finite rows red."""
    title = printable(f"{report.model} · {inputs_label(report.inputs)} · {report.device}")
    table = Table(title=title, title_justify="left", header_style="bold")
    # Numbers never shrink; on a narrow terminal the name and shape columns wrap instead.
    table.add_column("Layer (type)", overflow="fold")
    table.add_column("Shape")
    for header in ("Mean", "Std", "Min", "Max", "Zeros %", "NaN", "Inf"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Image", no_wrap=True)
    for layer in report.layers:
        s = layer.stats
        label = Text(printable(layer.name))
        label.append(f" ({printable(layer.type)})", style="dim")
        style = "bold red" if layer.nonfinite else "yellow" if layer.dead else ""
        table.add_row(label, dims_text(layer.shape), stat_text(s.mean),
                      stat_text(s.std), stat_text(s.min), stat_text(s.max),
                      f"{s.zero_fraction * 100:.1f}",
                      f"{s.nan_count:,}", f"{s.inf_count:,}",
                      printable(_image_cell(layer)), style=style)
    modules = len({layer.module for layer in report.layers})
    parts = [f"{len(report.layers)} output(s) of {modules} module(s)"]
    dead = [layer.name for layer in report.dead]
    parts.append(f"{len(dead)} dead (≥{DEAD_THRESHOLD:.0%} zeros)"
                 + (f": {_names(dead)}" if dead else ""))
    bad = [layer.name for layer in report.nonfinite]
    parts.append(f"{len(bad)} with NaN or Inf" + (f": {_names(bad)}" if bad else ""))
    images = [layer.image for layer in report.layers if layer.image is not None]
    if images:
        parts.append(f"{len(images)} image(s): {images[0].parent}/<layer>.png")
    style = "bold red" if bad else "yellow" if dead else ""
    return Group(table, Text(printable(" · ".join(parts)), style=style))
