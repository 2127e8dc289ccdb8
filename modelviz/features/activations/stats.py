"""Activation statistics, reduced to a few numbers inside the hook, and the few pixels images need.

Each selected module's output is measured while it is alive, in the engine's ``call_end``, and
only numbers are kept: statistics of every module of resnet50 cost no more activation memory than
a plain forward pass. A layer whose image is asked for also keeps a small CPU copy of what the
picture shows: at most ``max_channels`` channels of the first sample, never the whole batch.

Conventions (the docs repeat them): mean, std, min and max are taken over the finite values only,
so that one NaN does not hide the rest; std is the population standard deviation (correction 0);
``zero_fraction`` is exact zeros over all elements; a layer is *dead* when at least
``DEAD_THRESHOLD`` of its outputs are exactly zero.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn
from torch.nn import functional

from modelviz.core import engine
from modelviz.core.devices import require_values
from modelviz.core.records import CallRecord, Trace, dtype_name
from modelviz.core.tensors import walk
from modelviz.errors import SpecError

__all__ = [
    "DEAD_THRESHOLD", "ActivationProbe", "ActivationReport", "Capture", "LayerStats", "Stats",
    "tensor_stats",
]

#: A layer with at least this fraction of exact zeros is reported as dead (ReLU that never fires).
DEAD_THRESHOLD = 0.99
#: Bins of the ``--hist`` histogram.
HIST_BINS = 64
#: Heat maps are averaged down to at most this many rows and columns; bar charts to this length.
MAX_HEATMAP_SIDE = 1024
MAX_BARS = 4096
#: A 2-D output with several rows (batch x features) shows at most this many rows.
MAX_ROWS = 64


class Stats(NamedTuple):
    """Statistics of one tensor; ``None`` where no finite value exists."""

    mean: float | None
    std: float | None
    min: float | None
    max: float | None
    zero_fraction: float
    nan_count: int
    inf_count: int


@dataclass
class Capture:
    """What a layer's picture needs, copied to the CPU in float32 while the output was alive.

    ``kind`` is ``grid`` (``values`` is channels x H x W, strongest mean first, ``channels``
    their indices), ``heatmap`` (rows x columns) or ``bars`` (one value per unit).
    """

    kind: str
    values: torch.Tensor
    channels: list[int] = field(default_factory=list)
    channel_means: list[float] = field(default_factory=list)
    channel_count: int = 0
    rows_label: str = ""
    columns_label: str = ""
    note: str = ""
    #: --hist: counts over all finite values of the whole output, and the range they cover.
    hist: tuple[list[int], float, float] | None = None


def _json_float(value: float | None) -> float | None:
    """JSON has no Infinity: a std that overflowed float32 becomes null."""
    return value if value is not None and math.isfinite(value) else None


@dataclass
class LayerStats:
    """One tensor a selected module produced: one per call, one per element of a tuple output."""

    name: str  # conv1, pool#2 (second call), rnn.1.0 (nested tuple output), out.logits (dict)
    module: str  # the qualified module name
    type: str
    call: int  # 1 for the first call of the module
    shape: tuple[int, ...]
    dtype: str
    stats: Stats
    image: Path | None = None
    capture: Capture | None = field(default=None, repr=False)

    @property
    def dead(self) -> bool:
        return self.stats.zero_fraction >= DEAD_THRESHOLD

    @property
    def nonfinite(self) -> bool:
        return self.stats.nan_count > 0 or self.stats.inf_count > 0

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "name": self.name, "type": self.type, "shape": list(self.shape),
            "mean": _json_float(s.mean), "std": _json_float(s.std), "min": _json_float(s.min),
            "max": _json_float(s.max), "zero_fraction": s.zero_fraction,
            "nan_count": s.nan_count, "inf_count": s.inf_count,
            "image": str(self.image) if self.image is not None else None,
        }


@dataclass
class ActivationReport:
    """The statistics of one pass, the input picture if any, and remarks for the user."""

    model: str
    inputs: list[dict[str, Any]]
    layers: list[LayerStats]
    device: str = "cpu"
    notes: list[str] = field(default_factory=list)
    picture: Any = None  # images.ImageInput when the input was an image

    @property
    def dead(self) -> list[LayerStats]:
        return [layer for layer in self.layers if layer.dead]

    @property
    def nonfinite(self) -> list[LayerStats]:
        return [layer for layer in self.layers if layer.nonfinite]

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "inputs": self.inputs, "device": self.device,
                "dead_threshold": DEAD_THRESHOLD,
                "layers": [layer.to_dict() for layer in self.layers]}


# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# Measuring


def _real(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor as real numbers in float32 or float64, on its own device."""
    x = tensor.detach()
    if x.is_quantized:
        x = x.dequantize()
    if x.is_complex():
        x = x.abs()  # magnitudes
    if x.dtype in (torch.float32, torch.float64):
        return x
    if x.is_floating_point() or x.dtype == torch.bool:
        return x.float()  # float16, bfloat16, float8: measured in float32
    return x.double()  # integers: exact up to 2**53


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def tensor_stats(tensor: torch.Tensor) -> Stats:
    """Statistics computed where the tensor lives, read back with one synchronisation.

    The common case allocates nothing the size of the tensor: std_mean, aminmax and
    count_nonzero reduce in place. Only when min or max is not finite (NaN or Inf present) are
    masks and a copy of the finite values made.
    """
    x = _real(tensor)
    n = x.numel()
    if n == 0:
        return Stats(None, None, None, None, 0.0, 0, 0)
    std, mean = torch.std_mean(x, correction=0)
    low, high = torch.aminmax(x)
    nonzero = torch.count_nonzero(x)  # NaN counts as non-zero
    values = torch.stack([mean.double(), std.double(), low.double(), high.double(),
                          nonzero.double()]).tolist()
    mean_v, std_v, low_v, high_v, nonzero_v = values
    zero_fraction = (n - int(nonzero_v)) / n
    if _finite(low_v) is not None and _finite(high_v) is not None:
        return Stats(mean_v, std_v, low_v, high_v, zero_fraction, 0, 0)
    finite_mask = torch.isfinite(x)
    nan_count = int(torch.isnan(x).sum().item())
    finite = x[finite_mask]
    del finite_mask
    inf_count = n - finite.numel() - nan_count
    if finite.numel() == 0:
        return Stats(None, None, None, None, zero_fraction, nan_count, inf_count)
    std, mean = torch.std_mean(finite, correction=0)
    low, high = torch.aminmax(finite)
    mean_v, std_v, low_v, high_v = torch.stack(
        [mean.double(), std.double(), low.double(), high.double()]).tolist()
    return Stats(mean_v, std_v, low_v, high_v, zero_fraction, nan_count, inf_count)


def _histogram(x: torch.Tensor, stats: Stats) -> tuple[list[int], float, float] | None:
    if stats.min is None or stats.max is None:
        return None
    values = x[torch.isfinite(x)] if stats.nan_count or stats.inf_count else x
    if stats.min == stats.max:
        return [values.numel()], stats.min, stats.max
    counts = torch.histc(values, bins=HIST_BINS, min=stats.min, max=stats.max)
    return [int(c) for c in counts.tolist()], stats.min, stats.max


def _shrink(matrix: torch.Tensor) -> tuple[torch.Tensor, str]:
    rows, cols = matrix.shape
    if rows <= MAX_HEATMAP_SIDE and cols <= MAX_HEATMAP_SIDE:
        return matrix, ""
    size = (min(rows, MAX_HEATMAP_SIDE), min(cols, MAX_HEATMAP_SIDE))
    pooled = functional.adaptive_avg_pool2d(matrix[None, None], size)[0, 0]
    return pooled, f"averaged from {rows}x{cols} to {size[0]}x{size[1]}"


def _bars(vector: torch.Tensor, note: str, unit: str = "unit") -> Capture:
    length = vector.shape[0]
    if length > MAX_BARS:
        vector = functional.adaptive_avg_pool1d(vector[None, None], MAX_BARS)[0, 0]
        note = f"{note}, averaged from {length} to {MAX_BARS} values".lstrip(", ")
    return Capture("bars", vector.float().cpu().clone(), rows_label="value",
                   columns_label=unit, note=note)


def _matrix(matrix: torch.Tensor, note: str, rows_label: str) -> Capture:
    """A heat map, or bars where the matrix is a single row or a single column."""
    if matrix.shape[0] == 1:
        return _bars(matrix[0], note)
    if matrix.shape[1] == 1:
        return _bars(matrix[:, 0], note, rows_label)
    shrunk, how = _shrink(matrix)
    return Capture("heatmap", shrunk.float().cpu().clone(), rows_label=rows_label,
                   columns_label="feature", note=", ".join(p for p in (note, how) if p))


def capture(tensor: torch.Tensor, *, max_channels: int, hist: bool, stats: Stats) -> Capture:
    """The small CPU copy a picture needs; by rank: 4-D and up a grid of channel maps of the
    first sample, 3-D a heat map of the first sample, 2-D a heat map of (at most 64) rows, 1-D
    bars. A matrix of one row or one column is drawn as bars, where a heat map one cell thick
    would hide the values."""
    x = _real(tensor)
    taken: Capture
    if x.ndim >= 4:
        sample = x[0]
        note = "sample 0"
        while sample.ndim > 3:  # video and volumes: the middle slice of each extra dimension
            middle = sample.shape[1] // 2
            note += f", slice {middle} of {sample.shape[1]} along dim {x.ndim - sample.ndim + 1}"
            sample = sample.select(1, middle)
        means = sample.float().mean(dim=(1, 2)).nan_to_num(nan=float("-inf"))
        order = torch.argsort(means, descending=True, stable=True)[:max_channels]
        tiles = sample.index_select(0, order).float().cpu()  # index_select copies
        taken = Capture("grid", tiles, channels=[int(i) for i in order.tolist()],
                        channel_means=[float(m) for m in means[order].tolist()],
                        channel_count=sample.shape[0], note=note)
    elif x.ndim == 3:
        taken = _matrix(x[0], "sample 0", "position")
    elif x.ndim == 2:
        rows = x[:MAX_ROWS] if x.shape[1] > 1 else x[:MAX_BARS]
        head = (f"samples 0–{rows.shape[0] - 1} of {x.shape[0]}" if rows.shape[0] < x.shape[0]
                else "sample 0" if x.shape[0] == 1 else "")
        taken = _matrix(rows, head, "sample")
    else:
        taken = _bars(x.reshape(-1), "")
    if hist:
        taken.hist = _histogram(x, stats)
    return taken


@dataclass
class _Entry:
    call: CallRecord
    number: int  # 1 for the module's first call
    position: int  # order of the element within the output
    path: tuple[str, ...]
    type: str
    shape: tuple[int, ...]
    dtype: str
    stats: Stats
    capture: Capture | None


class ActivationProbe(engine.Probe):
    """Measures the outputs of the chosen modules during the engine's pass.

    Keeps no reference to any output: only ``Stats`` and, for ``image_modules``, a ``Capture``.
    ``finish`` returns the ``LayerStats`` in the order the calls started (a parent before its
    children).
    """

    name = "activations"

    def __init__(self, modules: Sequence[str], *, image_modules: Sequence[str] = (),
                 max_channels: int = 64, hist: bool = False) -> None:
        self.modules = frozenset(modules)
        self.image_modules = frozenset(image_modules)
        self.max_channels = max_channels
        self.hist = hist
        self.entries: list[_Entry] = []
        self.counts: dict[str, int] = {}
        self.skipped: list[str] = []

    def call_end(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any) -> None:
        name = call.module
        if name not in self.modules:
            return
        number = self.counts[name] = self.counts.get(name, 0) + 1
        wants_image = name in self.image_modules
        for position, (path, tensor) in enumerate(walk(output)):
            require_values(tensor.device, "activation statistics need real numbers, and the "
                           "meta device has only shapes.", "Run on `device=cpu` or cuda.",
                           error=SpecError)
            if tensor.layout != torch.strided:
                self.skipped.append(".".join((name, *path)))
                continue
            stats = tensor_stats(tensor)
            taken = (capture(tensor, max_channels=self.max_channels, hist=self.hist,
                             stats=stats) if wants_image and tensor.numel() else None)
            self.entries.append(_Entry(call, number, position, path, type(module).__name__,
                                       tuple(tensor.shape), dtype_name(tensor.dtype), stats,
                                       taken))

    def finish(self, trace: Trace) -> list[LayerStats]:
        layers: list[LayerStats] = []
        used: set[str] = set()
        for entry in sorted(self.entries, key=lambda e: (e.call.index, e.position)):
            module = entry.call.module
            base = module if len(trace.modules[module].calls) == 1 else f"{module}#{entry.number}"
            name = ".".join((base, *entry.path))
            unique, k = name, 2
            while unique in used:  # a tuple element named like a submodule (seq.0 and seq.0)
                unique, k = f"{name}~{k}", k + 1
            used.add(unique)
            layers.append(LayerStats(unique, module, entry.type, entry.number, entry.shape,
                                     entry.dtype, entry.stats, capture=entry.capture))
        self.entries.clear()
        return layers
