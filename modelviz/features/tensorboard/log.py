"""A TensorBoard log of a model: its graph, parameter histograms, activation images, summary.

The seed posts' TensorBoard routine (``SummaryWriter``, ``add_graph``, ``add_histogram``,
``add_image``, ``add_text``) from one command. What is logged (the summary text and scalars, the
activation cards, the parameters) is ``features.dashboard``'s, shared with W&B and Visdom; the
graph comes from TensorBoard's own tracer (``torch.jit.trace``), which is the only way to
produce the graph format TensorBoard reads.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from modelviz.core.devices import require_values
from modelviz.core.stages import Stage, quiet
from modelviz.errors import MissingToolError, OutputError, failure_line
from modelviz.output import commit_files, exclusive, staging_dir

if TYPE_CHECKING:
    from modelviz.core.session import Prepared
    from modelviz.features.dashboard.content import DashboardContent


@dataclass
class TensorboardLog:
    """What was written, and what could not be (with why)."""

    logdir: Path
    graph_nodes: int = 0
    histograms: list[str] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    scalars: list[str] = field(default_factory=list)
    text: bool = False
    files: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # part -> reason

    def to_dict(self) -> dict[str, Any]:
        return {"logdir": str(self.logdir), "graph_nodes": self.graph_nodes,
                "histograms": len(self.histograms), "images": self.images,
                "scalars": self.scalars, "text": self.text,
                "files": [str(f) for f in self.files], "skipped": self.skipped}


def _writer(logdir: Path) -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as exc:  # pragma: no cover - tensorboard is a dependency
        raise MissingToolError("the tensorboard package is not installed.",
                               "pip install tensorboard") from exc
    return SummaryWriter(str(logdir))


def _graph(writer: Any, model: nn.Module, args: tuple[Any, ...], train: bool) -> str | None:
    """add_graph in the pass's mode (eval unless --train: dropout would make the tracer's two
    runs differ), with the model's flags and buffers restored afterwards (a BatchNorm traced
    in train mode updates its running statistics); returns why it failed, if it did."""
    from modelviz.core.engine import as_run

    try:
        with warnings.catch_warnings(), as_run(model, None, train=train) as placed:
            warnings.simplefilter("ignore")  # jit.trace's deprecation and tracer warnings
            # Traced here without the tracer's self-check, which add_graph cannot turn off: it
            # compares two traces' generated class names and fails on transformers for that.
            traced = torch.jit.trace(  # type: ignore[no-untyped-call]
                placed, args, strict=False, check_trace=False)
            writer.add_graph(traced, args if len(args) != 1 else args[0], use_strict_trace=False)
    except Exception as exc:  # the tracer fails in many ways on dynamic models
        return failure_line(exc, limit=200)
    return None


def write_log(logdir: str | Path, content: DashboardContent, *, graph: bool = True,
              histograms: bool = True, train: bool = False, step: int = 0) -> TensorboardLog:
    """Write one TensorBoard run of ``content`` (``features.dashboard``) into ``logdir``.

    The events are written in a private folder outside the run's parent (where TensorBoard
    would list it as a run) and move in only when complete, so a failure leaves no truncated
    event file for TensorBoard to choke on; a second writer of the same run fails at once.
    """
    model = content.prepared.model
    require_values(model, "a TensorBoard log needs real weights, and the model is on the meta "
                   "device.", "Use `device=cpu` (or cuda).")
    folder = Path(logdir)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"`logdir={folder}` is a file, not a folder.",
                          "Give a folder, e.g. `logdir=runs/resnet18`.")
    result = TensorboardLog(folder)
    with exclusive(folder):
        staging = staging_dir()
        try:
            writer = _writer(staging)
            try:
                _fill(writer, result, content, graph=graph, histograms=histograms,
                      train=train, step=step)
            finally:
                writer.close()
            if graph and "graph" not in result.skipped:
                result.graph_nodes = _count_graph_nodes(staging)
            result.files = commit_files(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return result


def _fill(writer: Any, result: TensorboardLog, content: DashboardContent, *, graph: bool,
          histograms: bool, train: bool, step: int) -> None:
    if graph:
        reason = _graph(writer, content.prepared.model, content.prepared.inputs.args, train)
        if reason is not None:
            result.skipped["graph"] = reason
    if histograms:
        for name, values in content.parameters():
            writer.add_histogram(f"parameters/{name}", values, step)
            result.histograms.append(name)
    for card in content.cards:
        writer.add_image(f"activations/{card.name}", card.pixels, step, dataformats="HWC")
        result.images.append(card.name)
    for key, value in content.totals.items():
        writer.add_scalar(f"summary/{key}", float(value), step)
        result.scalars.append(f"summary/{key}")
    writer.add_text("summary", content.markdown, step)
    result.text = True


def _count_graph_nodes(folder: Path) -> int:
    """Read the graph back with TensorBoard's own event reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"tensors": 0})
    events.Reload()
    return len(events.Graph().node) if events.Tags().get("graph") else 0


def write_run(prepared: Prepared, logdir: str | Path, *, layers: Sequence[str] = (),
              types: Sequence[str] = (), graph: bool = True, histograms: bool = True,
              max_channels: int = 16, train: bool = False, memory: bool = False,
              stage: Stage = quiet) -> TensorboardLog:
    """The log of a prepared model from one pass (``features.dashboard``): the summary and the
    activation cards of ``layers``/``types`` (default: a few representative layers)."""
    from modelviz.features.dashboard.content import build_content

    content = build_content(prepared, what="a TensorBoard log", layers=tuple(layers),
                            types=tuple(types), max_channels=max_channels, train=train,
                            memory=memory, stage=stage)
    return write_log(logdir, content, graph=graph, histograms=histograms, train=train)
