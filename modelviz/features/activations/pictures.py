"""Pictures of what a layer computed, as PNG files drawn with matplotlib's Agg backend.

One figure per layer output. A 4-D output is a grid of its channel maps (``grid_shape``: as many
columns as the square root of the tile count, rounded up), each map on its own colour scale with
its channel index above and its value range below, or with ``shared_scale`` all on one scale with
one colour bar; a 3-D or 2-D output is a heat map with a colour bar (the layers of a recurrent
state labelled as such); the patch tokens of a vision transformer are the norms of the tokens on
their grid, with the class token apart; a vector is a bar chart. One colour rule holds
throughout (``colour_rule``): data with a negative value is drawn with the diverging ``RdBu_r``
on limits symmetric about 0, so that 0 is always its white middle; non-negative data with
``viridis`` from its minimum to its maximum. The title carries the layer's name, type, shape
and statistics. With an image as input, the image is drawn on the left, and below it the image
again under the layer's mean over its channels (or a transformer's token norms), stretched over
it; with ``hist``, a histogram of all the output's values runs along the bottom of the same
figure. Layout is fixed in inches (no "tight" bounding box), so a figure's pixel size follows
from what it shows, and the same input gives the same bytes.
"""

from __future__ import annotations

import hashlib
import math
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from modelviz.core.formatting import dims_text, stat_text
from modelviz.errors import OutputError
from modelviz.features.activations.stats import ActivationReport, Capture, LayerStats
from modelviz.output import atomic_path
from modelviz.output import check_folder as check_output_folder

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["Layout", "check_folder", "colour_map", "colour_rule", "figure_pixels", "file_stem",
           "grid_shape", "layer_pixels", "layout", "limits", "render_layer", "write_images"]

DPI = 100
GRID_CMAP = "viridis"  # perceptually uniform: dark is low, yellow is high
DIVERGING_CMAP = "RdBu_r"  # data with negatives: blue negative, white 0, red positive
BAD_COLOUR = "#ff00ff"  # NaN and Inf pixels
MARGIN = 0.3  # inches around everything
HEADER = 1.1  # the title: name, statistics, and a caption of up to two lines
PICTURE = 2.6  # width of the input image panel
HIST = 1.9  # the histogram panel, with its labels
MIN_WIDTH = 7.0
COLOUR_BAR = 0.9  # the shared scale's colour bar right of the grid, with its labels
SCALE_TEXT = {GRID_CMAP: f"{GRID_CMAP}: dark low, yellow high",
              DIVERGING_CMAP: f"{DIVERGING_CMAP}: blue below 0, white at 0, red above"}


def grid_shape(tiles: int) -> tuple[int, int]:
    """Rows and columns of the channel grid: ceil(sqrt(n)) columns, as many rows as needed."""
    columns = max(1, math.ceil(math.sqrt(tiles)))
    return math.ceil(tiles / columns), columns


@dataclass(frozen=True)
class Layout:
    """Where everything goes, in inches from the figure's bottom-left corner."""

    width: float
    height: float
    body: tuple[float, float, float, float]  # left, bottom, width, height of the maps' area
    picture: tuple[float, float, float, float] | None
    hist: tuple[float, float, float, float] | None

    @property
    def pixels(self) -> tuple[int, int]:
        return round(self.width * DPI), round(self.height * DPI)


def _tile_size(capture: Capture) -> tuple[float, float]:
    """Width and height of one channel map in inches; its cell adds 0.15 across, 0.5 down for
    the labels."""
    _, columns = grid_shape(len(capture.channels))
    height, width = capture.values.shape[-2:]
    aspect = min(4.0, max(0.25, height / max(width, 1)))
    tile_w = min(2.4, max(1.0, 8.0 / columns))
    return tile_w, tile_w * aspect


def _body_size(capture: Capture, shared_scale: bool = False) -> tuple[float, float]:
    if capture.kind == "grid":
        rows, columns = grid_shape(len(capture.channels))
        tile_w, tile_h = _tile_size(capture)
        bar = COLOUR_BAR if shared_scale else 0.0
        return columns * (tile_w + 0.15) + bar, rows * (tile_h + 0.5)
    if capture.kind == "tokens":
        return 8.3, 7.45  # a square map: 6.7 inches across and down, and the class token
    if capture.kind == "heatmap":
        rows, columns = capture.values.shape
        return 8.3, min(5.5, max(2.2, 7.0 * rows / max(columns, 1))) + 0.75
    return 8.0, 3.2


def overlay_map(capture: Capture) -> torch.Tensor | None:
    """What is drawn over the input image: a grid's mean over all its channels, a
    transformer's token norms on their grid; None for other kinds."""
    if capture.kind == "tokens":
        return capture.values
    return capture.mean_map if capture.kind == "grid" else None


def layout(capture: Capture, *, picture: tuple[int, int] | None = None,
           hist: bool = False, shared_scale: bool = False) -> Layout:
    """The figure's geometry for a capture; ``picture`` is the input image's (height, width).
    With a map to overlay (``overlay_map``), the picture panel holds the image twice, the
    second time under the map."""
    body_w, body_h = _body_size(capture, shared_scale)
    picture_h = 0.0
    if picture is not None:
        picture_h = PICTURE * min(2.0, max(0.5, picture[0] / max(picture[1], 1))) + 0.35
        if overlay_map(capture) is not None:
            picture_h *= 2
    left = MARGIN + (PICTURE + 0.4 if picture is not None else 0.0)
    width = max(MIN_WIDTH, left + body_w + MARGIN)
    hist_h = HIST if hist else 0.0
    middle_h = max(body_h, picture_h)
    height = MARGIN + hist_h + middle_h + HEADER
    body_bottom = MARGIN + hist_h + middle_h - body_h
    return Layout(
        width=round(width, 2), height=round(height, 2),
        body=(left, body_bottom, body_w, body_h),
        picture=((MARGIN, MARGIN + hist_h + middle_h - picture_h, PICTURE, picture_h)
                 if picture is not None else None),
        hist=(MARGIN + 0.75, MARGIN + 0.45, width - 2 * MARGIN - 1.0, HIST - 0.75)
        if hist else None,
    )


def _finite_range(values: np.ndarray[Any, Any]) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return 0.0, 1.0
    return float(finite.min()), float(finite.max())


def colour_rule(values: np.ndarray[Any, Any]) -> str:
    """The colour map for ``values``: diverging where any finite value is negative, else
    sequential."""
    low, _ = _finite_range(values)
    return DIVERGING_CMAP if low < 0 else GRID_CMAP


def limits(values: np.ndarray[Any, Any], cmap: str) -> tuple[float, float]:
    """The colour limits of ``values`` under ``cmap``: symmetric about 0 for the diverging map
    (0 is its middle), else the finite minimum and maximum."""
    low, high = _finite_range(values)
    if cmap == DIVERGING_CMAP:
        bound = max(-low, high, 0.0) or 1.0
        return -bound, bound
    return low, high


def _axes(fig: Figure, box: tuple[float, float, float, float], size: Layout) -> Axes:
    left, bottom, width, height = box
    return fig.add_axes((left / size.width, bottom / size.height, width / size.width,
                         height / size.height))


def _integer_ticks() -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def colour_map(name: str) -> Any:
    """Matplotlib's map of that name, NaN and Inf in ``BAD_COLOUR`` (pictures and cards alike)."""
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=BAD_COLOUR)


def _title(fig: Figure, layer: LayerStats, caption: str, size: Layout) -> None:
    s = layer.stats
    top = 1 - 0.22 / size.height
    x = MARGIN / size.width
    fig.text(x, top, f"{layer.name} ({layer.type}) · output {dims_text(layer.shape)} {layer.dtype}",
             fontsize=11, fontweight="bold", va="top")
    flags = []
    if layer.dead:
        flags.append("DEAD")
    if layer.nonfinite:
        flags.append("NON-FINITE")
    stats = (f"mean {stat_text(s.mean)}   std {stat_text(s.std)}   min {stat_text(s.min)}"
             f"   max {stat_text(s.max)}"
             f"   zeros {s.zero_fraction:.1%}   NaN {s.nan_count:,}   Inf {s.inf_count:,}")
    fig.text(x, top - 0.28 / size.height, stats + ("   " + " ".join(flags) if flags else ""),
             fontsize=9, va="top", color="#b00020" if flags else "black")
    # DejaVu Sans at 8 points averages under 0.065 inches a character
    lines = textwrap.wrap(caption, width=int((size.width - 2 * MARGIN) / 0.065),
                          max_lines=2, placeholder=" …")
    fig.text(x, top - 0.52 / size.height, "\n".join(lines), fontsize=8, va="top",
             color="#555555", linespacing=1.3)


def _grid(fig: Figure, capture: Capture, size: Layout, shared_scale: bool = False) -> str:
    rows, columns = grid_shape(len(capture.channels))
    tile_w, tile_h = _tile_size(capture)
    left, bottom, _, body_h = size.body
    top = bottom + body_h
    values = capture.values.numpy()
    name = colour_rule(values)
    cmap = colour_map(name)
    shared = limits(values, name)
    image = None
    for i, channel in enumerate(capture.channels):
        row, column = divmod(i, columns)
        box = (left + column * (tile_w + 0.15), top - (row + 1) * (tile_h + 0.5) + 0.3,
               tile_w, tile_h)
        ax = _axes(fig, box, size)
        tile = values[i]
        low, high = shared if shared_scale else limits(tile, name)
        image = ax.imshow(np.ma.masked_invalid(tile), cmap=cmap, vmin=low, vmax=high,
                          interpolation="nearest", aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"#{channel}", fontsize=8, pad=2)
        low, high = _finite_range(tile)
        ax.set_xlabel(f"{low:.3g} … {high:.3g}", fontsize=6.5, labelpad=1.5)
    if shared_scale and image is not None:
        bar_left = left + columns * (tile_w + 0.15) + 0.1
        bar_bottom = top - rows * (tile_h + 0.5) + 0.3
        bar = _axes(fig, (bar_left, bar_bottom, 0.18, top - 0.2 - bar_bottom), size)
        fig.colorbar(image, cax=bar).ax.tick_params(labelsize=7)
    shown = len(capture.channels)
    height, width = values.shape[-2:]
    what = f"{shown} of {capture.channel_count} channels" if shown < capture.channel_count \
        else f"all {shown} channels"
    scale = ("all maps on one scale, the colour bar at the right" if shared_scale
             else "each map on its own scale (--shared-scale for one)")
    return (f"{what} ({height}x{width} maps) of {capture.note}, highest mean first (#index), "
            f"the range of each below it; {scale}; {SCALE_TEXT[name]}")


def _heatmap(fig: Figure, capture: Capture, size: Layout) -> str:
    left, bottom, body_w, body_h = size.body
    values = capture.values.numpy()
    # one scale for the map and the tokens drawn apart from it
    every = np.concatenate([values.ravel(), np.array([v for _, v in capture.apart])])
    name = colour_rule(every)
    low, high = limits(every, name)
    shift = 0.0
    if capture.apart:  # the class token, left of the grid
        shift = 0.75
        for k, (label, value) in enumerate(capture.apart):
            cell = _axes(fig, (left, bottom + body_h - 0.2 - (k + 1) * 0.85, 0.5, 0.5), size)
            cell.imshow(np.array([[value]]), cmap=colour_map(name), vmin=low, vmax=high,
                        interpolation="nearest", aspect="auto")
            cell.set_xticks([])
            cell.set_yticks([])
            cell.set_title(label, fontsize=7, pad=2)
            cell.set_xlabel(f"{value:.3g}", fontsize=6.5, labelpad=1.5)
    ax = _axes(fig, (left + 0.7 + shift, bottom + 0.55, body_w - 1.6 - shift, body_h - 0.75),
               size)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colour_map(name), vmin=low, vmax=high,
                      interpolation="nearest", aspect="auto")
    ax.set_xlabel(capture.columns_label, fontsize=9)
    ax.set_ylabel(capture.rows_label, fontsize=9)
    ax.xaxis.set_major_locator(_integer_ticks())
    if capture.row_names:
        ax.set_yticks(range(len(capture.row_names)), capture.row_names)
    else:
        ax.yaxis.set_major_locator(_integer_ticks())
    ax.tick_params(labelsize=7)
    bar = _axes(fig, (left + body_w - 0.75, bottom + 0.55, 0.18, body_h - 0.75), size)
    fig.colorbar(image, cax=bar).ax.tick_params(labelsize=7)
    rows, columns = values.shape
    rows_text = (f"{rows} {capture.rows_label}s x {columns} {capture.columns_label}s"
                 if capture.kind == "heatmap" else "")
    return ", ".join(p for p in (rows_text, capture.note, SCALE_TEXT[name]) if p)


def _bars(fig: Figure, capture: Capture, size: Layout) -> str:
    left, bottom, body_w, body_h = size.body
    values = capture.values.numpy()
    ax = _axes(fig, (left + 0.8, bottom + 0.55, body_w - 1.0, body_h - 0.75), size)
    positions = np.arange(values.size)
    name = colour_rule(values)
    low, high = limits(values, name)
    if values.size <= 512:
        from matplotlib.colors import Normalize

        shade = Normalize(vmin=low, vmax=high if high > low else low + 1.0)
        colours = colour_map(name)(shade(np.nan_to_num(values)))
        ax.bar(positions, np.nan_to_num(values), width=0.85, color=colours,
               edgecolor="#999999", linewidth=0.3)
    else:
        ax.plot(positions, values, linewidth=0.7, color="#555555")
    ax.axhline(0, color="black", linewidth=0.6)
    ax.set_xlim(-0.5, values.size - 0.5)
    ax.xaxis.set_major_locator(_integer_ticks())
    ax.set_xlabel(capture.columns_label, fontsize=9)
    ax.set_ylabel(capture.rows_label, fontsize=9)
    ax.tick_params(labelsize=7)
    colour = SCALE_TEXT[name] if values.size <= 512 else ""
    return ", ".join(p for p in (f"{values.size} values", capture.note, colour) if p)


OVERLAY_ALPHA = 0.55  # the overlaid map's opacity over the input image


def _picture(fig: Figure, display: torch.Tensor, size: Layout,
             capture: Capture | None = None) -> None:
    assert size.picture is not None
    left, bottom, width, height = size.picture
    over = overlay_map(capture) if capture is not None else None
    panel = height / 2 if over is not None else height
    pixels = display.numpy()
    for k in range(2 if over is not None else 1):
        ax = _axes(fig, (left, bottom + height - (k + 1) * panel, width, panel - 0.35), size)
        if pixels.shape[-1] == 1:
            ax.imshow(pixels[..., 0], cmap="gray", vmin=0, vmax=1, aspect="auto")
        else:
            ax.imshow(pixels, aspect="auto")
        ax.set_xticks([])
        ax.set_yticks([])
        if k == 0:
            ax.set_title(f"input {pixels.shape[0]}x{pixels.shape[1]}", fontsize=9, pad=3)
            continue
        assert over is not None and capture is not None
        values = over.numpy()
        name = colour_rule(values)
        low, high = limits(values, name)
        rows, columns = pixels.shape[:2]
        ax.imshow(np.ma.masked_invalid(values), cmap=colour_map(name), vmin=low, vmax=high,
                  alpha=OVERLAY_ALPHA, interpolation="bilinear", aspect="auto",
                  extent=(-0.5, columns - 0.5, rows - 0.5, -0.5))
        what = ("token norms" if capture.kind == "tokens"
                else f"mean of {capture.channel_count} channels")
        ax.set_title(f"{what}, over the input", fontsize=8, pad=3)


def _histogram(fig: Figure, capture: Capture, size: Layout) -> None:
    assert size.hist is not None
    ax = _axes(fig, size.hist, size)
    if capture.hist is None:
        ax.text(0.5, 0.5, "no finite values", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return
    counts, low, high = capture.hist
    if len(counts) == 1 or high == low:
        ax.bar([low], [sum(counts)], width=1.0, color="#777777")
    else:
        step = (high - low) / len(counts)
        ax.bar(low + step * np.arange(len(counts)), counts, width=step, align="edge",
               color="#777777")
    if max(counts) > 0:
        ax.set_yscale("symlog", linthresh=1)
    ax.set_xlabel(f"activation value (all {sum(counts):,} finite values, {len(counts)} bins)",
                  fontsize=8)
    ax.set_ylabel("count", fontsize=8)
    ax.tick_params(labelsize=7)


def render_layer(layer: LayerStats, *, picture: torch.Tensor | None = None,
                 hist: bool = False, shared_scale: bool = False) -> Figure:
    """The figure of one captured layer; ``picture`` is the input image (H x W x C in [0, 1]);
    ``shared_scale`` puts every channel map of a grid on one colour scale."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    capture = layer.capture
    if capture is None:
        raise ValueError(f"{layer.name} has no captured values to draw")
    shown = (int(picture.shape[0]), int(picture.shape[1])) if picture is not None else None
    size = layout(capture, picture=shown, hist=hist, shared_scale=shared_scale)
    fig = Figure(figsize=(size.width, size.height), dpi=DPI)
    FigureCanvasAgg(fig)
    if capture.kind == "grid":
        caption = _grid(fig, capture, size, shared_scale)
    else:
        draw = {"heatmap": _heatmap, "tokens": _heatmap, "bars": _bars}[capture.kind]
        caption = draw(fig, capture, size)
    if picture is not None:
        _picture(fig, picture, size, capture)
    if hist:
        _histogram(fig, capture, size)
    _title(fig, layer, caption, size)
    return fig


def layer_pixels(layer: LayerStats, *, picture: torch.Tensor | None = None,
                 hist: bool = False, shared_scale: bool = False) -> (
        np.ndarray[Any, np.dtype[np.uint8]]):
    """The layer's figure as an H x W x 3 uint8 array, for TensorBoard's ``add_image``."""
    return figure_pixels(render_layer(layer, picture=picture, hist=hist,
                                      shared_scale=shared_scale))


def figure_pixels(fig: Figure) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """A drawn figure as an H x W x 3 uint8 array (dashboards take arrays, not files)."""
    canvas = fig.canvas
    canvas.draw()
    rgba = np.asarray(canvas.buffer_rgba())  # type: ignore[attr-defined]
    return np.ascontiguousarray(rgba[..., :3])


def file_stem(name: str) -> str:
    """A layer name as a file name: letters, digits, ``.``, ``_`` and ``-``; others become ``_``."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "layer"
    if stem.startswith("."):
        stem = "_" + stem
    if len(stem) > 120:  # file systems stop at 255 bytes; keep long names unique
        stem = stem[:100] + "-" + hashlib.sha1(name.encode()).hexdigest()[:10]
    return stem


def check_folder(folder: str | Path) -> Path:
    """Fail before any work if ``folder`` cannot hold the images; creates nothing."""
    return check_output_folder(folder, holds="images", example="activations/")


def write_images(report: ActivationReport, folder: str | Path, *, hist: bool = False,
                 shared_scale: bool = False) -> list[Path]:
    """One PNG per captured layer into ``folder``, as ``<layer name>.png``; sets ``image``."""
    directory = Path(folder)
    display = report.picture.display if report.picture is not None else None
    taken: set[str] = set()
    written: list[Path] = []
    for layer in report.layers:
        if layer.capture is None:
            continue
        stem, k = file_stem(layer.name), 2
        unique = stem
        while unique.lower() in taken:  # pool#2 and pool_2, or names differing only by case
            unique, k = f"{stem}-{k}", k + 1
        taken.add(unique.lower())
        target = directory / f"{unique}.png"
        fig = render_layer(layer, picture=display, hist=hist, shared_scale=shared_scale)
        try:
            with atomic_path(target) as temporary:
                fig.savefig(temporary, format="png", dpi=DPI, metadata={"Software": None})
        except OSError as exc:
            raise OutputError(f"cannot write {target}: {exc.strerror or exc}.",
                              "Choose another folder with -o.") from exc
        layer.image = target
        written.append(target)
    return written
