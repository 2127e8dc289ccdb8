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
    their indices), ``heatmap`` (rows x columns; ``row_names`` label the rows where they are
    not plain indices, as the layers of a recurrent state), ``tokens`` (the norm of each patch
    token on its side x side grid; ``apart`` the tokens drawn beside it, as a class token) or
    ``bars`` (one value per unit).
    """

    kind: str
    values: torch.Tensor
    channels: list[int] = field(default_factory=list)
    channel_means: list[float] = field(default_factory=list)
    channel_count: int = 0
    rows_label: str = ""
    columns_label: str = ""
    note: str = ""
    row_names: list[str] = field(default_factory=list)
    apart: list[tuple[str, float]] = field(default_factory=list)
    #: the dimension of the output the grid's channels came from (1, or 3 for channels last)
    channel_dim: int = 1
    #: a grid's mean over all its channels (H x W), to overlay on an input image
    mean_map: torch.Tensor | None = None
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


def token_side(tokens: int) -> tuple[int, int] | None:
    """(tokens apart, grid side) when a sequence of ``tokens`` is a square grid of patches, with
    one class token before it (197 = 1 + 14 x 14) or none (196); None otherwise."""
    for apart in (1, 0):
        side = math.isqrt(tokens - apart)
        if side >= 2 and side * side == tokens - apart:
            return apart, side
    return None


def _state(x: torch.Tensor, rows: list[str]) -> Capture:
    """A recurrent module's hidden or cell state, layers (x directions) first: one row each."""
    matrix = x[:, 0] if x.ndim == 3 else x
    note = "sample 0" if x.ndim == 3 else ""
    if matrix.shape[0] == 1:
        return _bars(matrix[0], ", ".join(p for p in (rows[0], note) if p))
    shrunk, how = _shrink(matrix)
    return Capture("heatmap", shrunk.float().cpu().clone(), rows_label="layer",
                   columns_label="unit", row_names=list(rows),
                   note=", ".join(p for p in (note, "one row per layer", how) if p))


def _tokens(sample: torch.Tensor, apart: int, side: int) -> Capture:
    norms = torch.linalg.vector_norm(sample.float(), dim=-1)
    grid = norms[apart:].reshape(side, side)
    beside = [("class token", float(v)) for v in norms[:apart].tolist()]
    return Capture("tokens", grid.cpu().clone(), rows_label="patch row",
                   columns_label="patch column", apart=beside,
                   note=f"sample 0, norm of each token's {sample.shape[-1]} features, "
                        f"{side * side} patch tokens on their {side}x{side} grid"
                        + (", the class token apart" if apart else ""))


def capture(tensor: torch.Tensor, *, max_channels: int, hist: bool, stats: Stats,
            channel_dim: int = 1, state_rows: list[str] | None = None,
            token_grid: bool = False) -> Capture:
    """The small CPU copy a picture needs; by rank: 4-D and up a grid of channel maps of the
    first sample (channels from ``channel_dim``), 3-D a heat map of the first sample, 2-D a
    heat map of (at most 64) rows, 1-D bars. A matrix of one row or one column is drawn as bars,
    where a heat map one cell thick would hide the values. ``state_rows`` names the first
    dimension of a recurrent state (layers x directions); with ``token_grid`` a 3-D sequence of
    a square number of patches (after one class token, or none) is drawn on its grid."""
    x = _real(tensor)
    taken: Capture
    if state_rows and x.ndim in (2, 3) and x.shape[0] == len(state_rows):
        taken = _state(x, state_rows)
    elif x.ndim >= 4:
        if channel_dim % x.ndim not in (0, 1):
            x = x.movedim(channel_dim % x.ndim, 1)
        sample = x[0]
        note = "sample 0"
        if channel_dim % tensor.ndim not in (0, 1):
            note += f", channels from dim {channel_dim % tensor.ndim} (channels last)" \
                if channel_dim % tensor.ndim == tensor.ndim - 1 \
                else f", channels from dim {channel_dim % tensor.ndim}"
        while sample.ndim > 3:  # video and volumes: the middle slice of each extra dimension
            middle = sample.shape[1] // 2
            note += f", slice {middle} of {sample.shape[1]} along dim {x.ndim - sample.ndim + 1}"
            sample = sample.select(1, middle)
        means = sample.float().mean(dim=(1, 2)).nan_to_num(nan=float("-inf"))
        order = torch.argsort(means, descending=True, stable=True)[:max_channels]
        tiles = sample.index_select(0, order).float().cpu()  # index_select copies
        taken = Capture("grid", tiles, channels=[int(i) for i in order.tolist()],
                        channel_means=[float(m) for m in means[order].tolist()],
                        channel_count=sample.shape[0], note=note,
                        channel_dim=channel_dim % tensor.ndim,
                        mean_map=sample.float().mean(dim=0).cpu().clone())
    elif x.ndim == 3 and token_grid and (grid := token_side(x.shape[1])) is not None \
            and x.shape[2] > 1:
        taken = _tokens(x[0], *grid)
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


def _width(module: nn.Module) -> tuple[int, bool] | None:
    """The channels a layer with parameters outputs, and whether they come last (LayerNorm over
    one dimension, Linear) or second (convolutions, batch and group norms)."""
    if isinstance(module, nn.LayerNorm) and len(module.normalized_shape) == 1:
        return int(module.normalized_shape[0]), True
    if isinstance(module, nn.Linear):
        return module.out_features, True
    if isinstance(module, nn.modules.conv._ConvNd):
        return module.out_channels, False
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return module.num_features, False
    if isinstance(module, nn.GroupNorm):
        return module.num_channels, False
    return None


def _own_width(module: nn.Module) -> tuple[int, bool] | None:
    """``_width`` of the module, or of the last such layer inside it."""
    found = None
    for inner in module.modules():
        found = _width(inner) or found
    return found


def _state_rows(module: nn.Module, path: tuple[str, ...]) -> list[str] | None:
    """Names of the first dimension of an RNN, LSTM or GRU's final state (h_n, c_n)."""
    if not isinstance(module, nn.RNNBase) or not path or path[0] != "1":
        return None
    if not module.bidirectional:
        return [f"layer {i}" for i in range(module.num_layers)]
    return [f"layer {i} {way}" for i in range(module.num_layers)
            for way in ("forward", "backward")]


def patch_embedding(model: nn.Module) -> bool:
    """Whether the model cuts its image into patches (a convolution as strided as it is wide,
    as ViT's and Swin's): then a sequence of a square number of tokens is a grid of patches."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            kernel, stride = tuple(module.kernel_size), tuple(module.stride)
            if kernel == stride and kernel[0] > 1:
                return True
    return False


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
                 max_channels: int = 64, hist: bool = False, channel_dim: int | None = None,
                 token_grid: bool = False) -> None:
        self.modules = frozenset(modules)
        self.image_modules = frozenset(image_modules)
        self.max_channels = max_channels
        self.hist = hist
        self.channel_dim = channel_dim
        self.token_grid = token_grid
        #: the last layer with a known channel count to finish: a Permute after a convolution
        #: has no parameters of its own to tell its layout
        self.previous: tuple[int, bool] | None = None
        self.entries: list[_Entry] = []
        self.counts: dict[str, int] = {}
        self.skipped: list[str] = []

    def call_end(self, call: CallRecord, module: nn.Module, args: tuple[Any, ...],
                 kwargs: dict[str, Any], output: Any) -> None:
        name = call.module
        width = _width(module)
        if name not in self.modules:
            self.previous = width or self.previous
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
                             stats=stats, channel_dim=self._channel_dim(module, tensor),
                             state_rows=_state_rows(module, path), token_grid=self.token_grid)
                     if wants_image and tensor.numel() else None)
            self.entries.append(_Entry(call, number, position, path, type(module).__name__,
                                       tuple(tensor.shape), dtype_name(tensor.dtype), stats,
                                       taken))
        self.previous = width or self.previous

    def _channel_dim(self, module: nn.Module, tensor: torch.Tensor) -> int:
        """Where a 4-D output keeps its channels: ``channel_dim`` if given, else the last
        dimension only where it equals the channel count of the module's last LayerNorm or
        Linear (or, for a module without parameters, of the layer that ran before it) and the
        second does not; else 1."""
        ndim = tensor.ndim
        if self.channel_dim is not None and -ndim <= self.channel_dim < ndim \
                and self.channel_dim % ndim != 0:
            return self.channel_dim % ndim
        if ndim != 4 or self.channel_dim is not None:
            return 1
        own = _own_width(module)
        channels, last = own if own is not None else self.previous or (0, False)
        if own is None:
            last = True  # Permute after a convolution: the count alone tells
        if last and channels == tensor.shape[-1] != tensor.shape[1]:
            return 3
        return 1

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
