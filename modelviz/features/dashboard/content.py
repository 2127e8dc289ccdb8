"""What a dashboard shows, decided once for ``tensorboard``, ``wandb`` and ``visdom``.

One instrumented pass gives the summary (the layer table and the totals), the activation cards
of the chosen layers and, when asked for, the module graph (its probe rides in the same pass);
the pass keeps its output as the ONNX file's parity reference. Each dashboard then only says
how to log what is here, so the three show the same rows, the same totals, the same pictures and
the same histograms, and cannot drift apart. What could not be made (no Graphviz, an operator
ONNX cannot express) is in ``skipped``, with why; the rest is still there.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modelviz.core.formatting import shape_text
from modelviz.core.stages import Stage, quiet
from modelviz.errors import failure_line

if TYPE_CHECKING:
    from modelviz.core.session import Prepared
    from modelviz.features.onnx.result import ExportResult
    from modelviz.features.summary.summary import Row, Summary

__all__ = ["COLUMNS", "HIST_BINS", "TOTALS", "Card", "DashboardContent", "Histogram",
           "build_content", "table_rows"]

#: The layer table's columns, in order: the rows of ``modelviz summary``'s default table (its
#: depth and folding), with numbers as numbers so that a dashboard can sort them.
COLUMNS = ("layer", "type", "depth", "calls", "output_shape", "params", "trainable_params",
           "flops", "output_bytes")
#: The totals every dashboard shows; the peaks join them when the run computed them.
TOTALS = ("params", "trainable_params", "flops", "estimated_total_size_mb")
#: Bins of a parameter histogram (TensorBoard bins its own, from the values).
HIST_BINS = 64
MB = 1024**2


@dataclass(frozen=True)
class Card:
    """One layer's activation picture, sized for a dashboard card (``activations.cards``)."""

    name: str
    type: str
    pixels: np.ndarray[Any, np.dtype[np.uint8]]


@dataclass(frozen=True)
class Histogram:
    """One parameter tensor's values: ``counts`` in ``len(edges) - 1`` equal bins."""

    name: str
    counts: list[int]
    edges: list[float]
    values: int  # the tensor's element count; non-finite ones are in no bin

    @property
    def centres(self) -> list[float]:
        return [(a + b) / 2 for a, b in zip(self.edges, self.edges[1:], strict=False)]


@dataclass
class DashboardContent:
    """Everything a dashboard logs about one model, from one pass."""

    prepared: Prepared
    summary: Summary
    rows: list[list[Any]]
    totals: dict[str, float]
    markdown: str
    summary_json: str
    cards: list[Card] = field(default_factory=list)
    graph_svg: str | None = None
    graph_html: str | None = None
    onnx: ExportResult | None = None
    skipped: dict[str, str] = field(default_factory=dict)  # part -> why it is missing

    @property
    def model(self) -> str:
        return self.summary.model

    @property
    def columns(self) -> tuple[str, ...]:
        return COLUMNS

    def parameters(self) -> Iterator[tuple[str, torch.Tensor]]:
        """Each parameter tensor by name (a tied one once), detached, as float32 on the cpu."""
        for name, param in self.prepared.model.named_parameters():
            yield name, param.detach().float().cpu()

    def histograms(self) -> list[Histogram]:
        """``HIST_BINS`` equal bins over each parameter tensor's finite values."""
        found = []
        for name, values in self.parameters():
            flat = values.numpy().ravel()
            finite = flat[np.isfinite(flat)]
            if finite.size == 0:
                continue
            counts, edges = np.histogram(finite, bins=HIST_BINS)
            found.append(Histogram(name, [int(c) for c in counts],
                                   [float(e) for e in edges], int(flat.size)))
        return found

    def config(self) -> dict[str, Any]:
        """How the model was run, for a dashboard's run settings (W&B's config)."""
        import modelviz

        prepared = self.prepared
        return {"model": self.model, "model_type": self.summary.trace.model_type,
                "inputs": self.summary.inputs, "batch_size": self.summary.batch_size,
                "device": str(prepared.device), "modelviz": modelviz.__version__}


def _row(row: Row) -> list[Any]:
    record = row.record
    call = record.first_call
    kind = record.type + (f" ×{row.count}" if row.count > 1 else "")
    shape = shape_text(call.output) if call else (
        "–" if record.extra.get("container") else "not called")
    return [row.name, kind, row.depth, len(record.calls), shape, row.total("params_total"),
            row.total("trainable_total"), row.total("flops"), row.total("output_bytes")]


def table_rows(summary: Summary) -> list[list[Any]]:
    """The rows of ``modelviz summary``'s default table, as ``COLUMNS``."""
    from modelviz.features.summary.cells import display_rows
    from modelviz.features.summary.options import TableOptions

    return [_row(row) for row in display_rows(summary, TableOptions())]


def build_content(prepared: Prepared, *, what: str, layers: tuple[str, ...] = (),
                  types: tuple[str, ...] = (), max_channels: int = 16, train: bool = False,
                  graph: bool = False, page: bool = True,
                  onnx_to: str | Path | None = None, static: bool = False,
                  memory: bool = False, stage: Stage = quiet) -> DashboardContent:
    """The content of a dashboard of ``prepared``; ``what`` names the dashboard in the error
    for the meta device. ``graph``: the module graph as SVG and, with ``page``, as the
    interactive page; ``onnx_to``: export and verify the model into that folder, the pass's
    output as reference (``static``: a fixed batch, the faster export); ``memory``: the peaks
    of ``modelviz memory``'s plan (inference, and a training step with Adam) among the
    totals."""
    from modelviz.core import session
    from modelviz.features.activations.cards import MAX_TILES, card_pixels
    from modelviz.features.activations.measure import activation_probe, activation_report
    from modelviz.features.activations.select import representative_modules
    from modelviz.features.summary.data import render_json
    from modelviz.features.summary.markdown import render_markdown
    from modelviz.features.summary.options import TableOptions
    from modelviz.features.summary.summary import summarize

    prepared.require_values(f"{what} needs real weights and activations, and the meta device "
                            "has only shapes.", "Use `device=cpu` (or cuda).")
    chosen_layers, chosen_types = tuple(layers), tuple(types)
    if not chosen_layers and not chosen_types:
        chosen_layers = tuple(representative_modules(prepared.model))
    probes: list[Any] = [activation_probe(prepared, layers=chosen_layers, types=chosen_types,
                                          images=True, max_channels=min(max_channels,
                                                                        MAX_TILES))]
    graph_probe = None
    if graph:
        from modelviz.features.graph.draw import graph_probe as make_graph_probe

        graph_probe = make_graph_probe(prepared)
        probes.append(graph_probe)
    with stage("Running the forward pass"):
        trace = session.run(prepared, train=train, keep_output=onnx_to is not None,
                            probes=tuple(probes))
    summary = summarize(prepared, trace)
    report = activation_report(prepared, trace, probes[0], layers=chosen_layers)
    content = DashboardContent(
        prepared=prepared, summary=summary, rows=table_rows(summary),
        totals=_totals(summary), markdown=render_markdown(summary, TableOptions()),
        summary_json=render_json(summary))
    with stage("Drawing the activations"):
        content.cards = [Card(layer.name, layer.type, card_pixels(layer))
                         for layer in report.layers if layer.capture is not None]
    if graph_probe is not None:
        with stage("Drawing the graph"):
            _graph(content, trace, graph_probe, page=page)
    if onnx_to is not None:
        with stage("Exporting to ONNX and checking parity"):
            _onnx(content, trace, Path(onnx_to), train=train, static=static)
    if memory:
        with stage("Planning memory"):
            _memory(content)
    return content


def _totals(summary: Summary) -> dict[str, float]:
    totals = summary.totals
    found: dict[str, float] = {key: getattr(totals, key) for key in TOTALS}
    if totals.peak_memory_mb is not None:  # measured on CUDA
        found["peak_memory_mb"] = totals.peak_memory_mb
    return found


def _graph(content: DashboardContent, trace: Any, probe: Any, *, page: bool) -> None:
    from modelviz.features.graph import interactive
    from modelviz.features.graph.draw import module_drawing

    prepared = content.prepared
    try:
        drawing = module_drawing(prepared, trace, probe)
        content.graph_svg = drawing.render("svg").data.decode("utf-8")
    except Exception as exc:  # no Graphviz, or a graph dot cannot lay out
        content.skipped["graph"] = failure_line(exc, limit=200)
    if not page:
        return
    try:  # laid out in the browser: made even where dot is missing
        content.graph_html = interactive.page(interactive.viewer_data(prepared, trace, probe))
    except Exception as exc:
        content.skipped["graph.html"] = failure_line(exc, limit=200)


def _onnx(content: DashboardContent, trace: Any, folder: Path, *, train: bool,
          static: bool) -> None:
    from modelviz.features.onnx import export as onnx_export

    try:
        content.onnx = onnx_export.export(content.prepared, folder / "model.onnx", train=train,
                                          dynamic_batch=not static,
                                          reference=trace.output_value)
    except Exception as exc:  # an operator ONNX cannot express: the rest is still logged
        content.skipped["onnx"] = failure_line(exc, limit=200)
        return
    if not content.onnx.ok:
        worst = content.onnx.worst
        content.skipped["onnx parity"] = (
            f"ONNX Runtime's output differs from torch's by {worst.max_abs_error:.3g}"
            if worst is not None else "; ".join(content.onnx.problems) or "check failed")


def _memory(content: DashboardContent) -> None:
    from modelviz.features.memory.plan import plan

    try:
        result = plan(content.prepared, optimizer="adam")
    except Exception as exc:
        content.skipped["memory"] = failure_line(exc, limit=200)
        return
    content.totals["inference_peak_mb"] = result.inference.peak_bytes / MB
    if result.training is not None:
        content.totals["training_peak_mb"] = result.training.peak_bytes / MB
