"""Activation pictures sized for a dashboard's image card: TensorBoard, W&B, Visdom.

``pictures.py`` draws figures to be opened one at a time, full size: a 16-channel grid is about
860x1000 px with 6.5 to 11 point text. TensorBoard's Images tab fits each image into a card
whose picture box is about 300x230 CSS px at its default card width (335 px wide, less 16 px
of padding a side; 320 px high, less the heading and the step slider), scaling it down to fit,
so that text became 2 to 3 px high: thumbnails nobody can read. W&B's media panels and Visdom's
windows are of the same order.

A card is therefore one fixed size, ``CARD_PIXELS``: twice that box (sharp on a 2x display,
where the box has 600x460 device pixels), with 4:3-ish proportions that fill it, and every
text at least ``MIN_POINTS``, which is 18 px in the picture and 9 CSS px once the card shows it
at half size. To leave room for text that large, a card holds less than the full figure: a grid
of at most 16 maps on one colour scale with one colour bar (a scale per tile needs a range per
tile, too much text for a card), the channel index in each tile's corner, and the layer's name,
shape and statistics above. Every card of a run is the same size, so a dashboard's grid of
cards lines up. The colour rule is ``pictures``': diverging about 0 for signed data,
sequential otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from modelviz.core.formatting import dims_text, stat_text
from modelviz.features.activations.pictures import (
    colour_map,
    colour_rule,
    figure_pixels,
    grid_shape,
    limits,
)
from modelviz.features.activations.stats import Capture, LayerStats

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["CARD_BOX", "CARD_PIXELS", "MAX_TILES", "MIN_POINTS", "card_figure", "card_pixels",
           "shown_scale"]

#: TensorBoard's image card picture box at the default card width, in CSS px (width, height).
CARD_BOX = (300, 230)
DPI = 100
#: The card's size in pixels: twice ``CARD_BOX``.
CARD_PIXELS = (600, 460)
#: The smallest text on a card, in points: 18 px at 100 dpi, 9 CSS px at the card's half size.
MIN_POINTS = 13.0
TITLE_POINTS = 15.0
#: At most this many channel maps on a card (4x4); a dashboard asks for no more.
MAX_TILES = 16

_WIDTH, _HEIGHT = CARD_PIXELS[0] / DPI, CARD_PIXELS[1] / DPI  # inches
_MARGIN = 0.12
_HEADER = 0.72  # two lines: name and shape, statistics
_BAR = 0.95  # the colour bar and its tick labels, right of the body


def shown_scale(width: int, height: int, box: tuple[int, int] = CARD_BOX) -> float:
    """How much a picture of ``width`` x ``height`` pixels is scaled to fit ``box``."""
    return min(1.0, box[0] / width, box[1] / height)


def _axes(fig: Figure, left: float, bottom: float, width: float, height: float) -> Axes:
    return fig.add_axes((left / _WIDTH, bottom / _HEIGHT, width / _WIDTH, height / _HEIGHT))


def _title(fig: Figure, layer: LayerStats) -> None:
    s = layer.stats
    top = 1 - 0.06 / _HEIGHT
    x = _MARGIN / _WIDTH
    fig.text(x, top, _fit(f"{layer.name} ({layer.type}) {dims_text(layer.shape)}", 46),
             fontsize=TITLE_POINTS, fontweight="bold", va="top")
    flags = " DEAD" if layer.dead else (" NON-FINITE" if layer.nonfinite else "")
    fig.text(x, top - 0.33 / _HEIGHT,
             f"mean {stat_text(s.mean)}  std {stat_text(s.std)}  "
             f"min {stat_text(s.min)}  max {stat_text(s.max)}{flags}",
             fontsize=MIN_POINTS, va="top", color="#b00020" if flags else "#333333")


def _fit(text: str, limit: int) -> str:
    """``text`` cut in its middle to ``limit`` characters, the most a card's line holds at its
    size (a long qualified name keeps its start and its end)."""
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return text[:half] + "…" + text[len(text) - (limit - 1 - half):]


def _colour_bar(fig: Figure, image: Any, bottom: float, height: float) -> None:
    bar = _axes(fig, _WIDTH - _BAR + 0.08, bottom, 0.16, height)
    colours = fig.colorbar(image, cax=bar)
    colours.ax.tick_params(labelsize=MIN_POINTS)
    colours.ax.yaxis.set_major_locator(_ticks(4))


def _ticks(count: int) -> Any:
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(nbins=count, integer=False)


def _grid(fig: Figure, capture: Capture) -> None:
    """The maps as one mosaic in one axes (16 axes cost a card most of its time), white
    between tiles, each tile stretched to its cell as the full figure's are."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    values = capture.values.numpy()[:MAX_TILES]
    channels = capture.channels[:MAX_TILES]
    rows, columns = grid_shape(len(channels))
    name = colour_rule(values)
    low, high = limits(values, name)
    cmap = colour_map(name)
    shade = Normalize(vmin=low, vmax=high)
    height, width = values.shape[-2:]
    gap_h, gap_w = max(1, round(height * 0.06)), max(1, round(width * 0.06))
    mosaic = np.ones((rows * height + (rows - 1) * gap_h,
                      columns * width + (columns - 1) * gap_w, 4))
    for i in range(len(channels)):
        row, column = divmod(i, columns)
        top, left = row * (height + gap_h), column * (width + gap_w)
        mosaic[top:top + height, left:left + width] = cmap(shade(np.ma.masked_invalid(values[i])))
    body_w = _WIDTH - 2 * _MARGIN - _BAR
    body_h = _HEIGHT - _HEADER - 2 * _MARGIN
    ax = _axes(fig, _MARGIN, _MARGIN, body_w, body_h)
    ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    ax.set_axis_off()
    for i, channel in enumerate(channels):
        row, column = divmod(i, columns)
        ax.text((column * (width + gap_w) - 0.5) / mosaic.shape[1] + 0.005,
                1 - (row * (height + gap_h) - 0.5) / mosaic.shape[0] - 0.01, f"#{channel}",
                transform=ax.transAxes, fontsize=MIN_POINTS, va="top", ha="left",
                color="white", bbox={"boxstyle": "square,pad=0.1", "facecolor": "black",
                                     "alpha": 0.55, "linewidth": 0})
    _colour_bar(fig, ScalarMappable(norm=shade, cmap=cmap), _MARGIN, body_h)


def _heatmap(fig: Figure, capture: Capture) -> None:
    values = capture.values.numpy()
    every = np.concatenate([values.ravel(), np.array([v for _, v in capture.apart])])
    name = colour_rule(every)
    low, high = limits(every, name)
    named = bool(capture.row_names) and len(capture.row_names) <= 6
    left, bottom = _MARGIN + (0.95 if named else 0.75), _MARGIN + 0.55
    width = _WIDTH - left - _BAR - 0.05
    height = _HEIGHT - _HEADER - bottom - 0.05
    ax = _axes(fig, left, bottom, width, height)
    image = ax.imshow(np.ma.masked_invalid(values), cmap=colour_map(name), vmin=low, vmax=high,
                      interpolation="nearest", aspect="auto")
    label = capture.columns_label
    if capture.apart:
        label += "; " + ", ".join(f"{k} {v:.3g}" for k, v in capture.apart)
    ax.set_xlabel(label, fontsize=MIN_POINTS)
    ax.xaxis.set_major_locator(_ticks(4))
    if named:  # "layer 0", "layer 1": the names say what the rows are
        ax.set_yticks(range(len(capture.row_names)), capture.row_names)
    else:
        ax.set_ylabel(capture.rows_label, fontsize=MIN_POINTS)
        ax.yaxis.set_major_locator(_ticks(4))
    ax.tick_params(labelsize=MIN_POINTS)
    _colour_bar(fig, image, bottom, height)


def _bars(fig: Figure, capture: Capture) -> None:
    values = capture.values.numpy()
    left, bottom = _MARGIN + 0.95, _MARGIN + 0.55
    ax = _axes(fig, left, bottom, _WIDTH - left - _MARGIN - 0.1,
               _HEIGHT - _HEADER - bottom - 0.05)
    positions = np.arange(values.size)
    name = colour_rule(values)
    low, high = limits(values, name)
    if values.size <= 256:
        from matplotlib.colors import Normalize

        shade = Normalize(vmin=low, vmax=high if high > low else low + 1.0)
        ax.bar(positions, np.nan_to_num(values), width=0.85,
               color=colour_map(name)(shade(np.nan_to_num(values))))
    else:
        ax.plot(positions, values, linewidth=1.0, color="#555555")
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlim(-0.5, values.size - 0.5)
    ax.xaxis.set_major_locator(_ticks(4))
    ax.yaxis.set_major_locator(_ticks(4))
    ax.set_xlabel(capture.columns_label, fontsize=MIN_POINTS)
    ax.set_ylabel(capture.rows_label, fontsize=MIN_POINTS)
    ax.tick_params(labelsize=MIN_POINTS)


def card_figure(layer: LayerStats) -> Figure:
    """The card of one captured layer, as a matplotlib figure of ``CARD_PIXELS``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    capture = layer.capture
    if capture is None:
        raise ValueError(f"{layer.name} has no captured values to draw")
    fig = Figure(figsize=(_WIDTH, _HEIGHT), dpi=DPI)
    FigureCanvasAgg(fig)
    if capture.kind == "grid":
        _grid(fig, capture)
    elif capture.kind == "bars":
        _bars(fig, capture)
    else:  # heatmap, tokens
        _heatmap(fig, capture)
    _title(fig, layer)
    return fig


def card_pixels(layer: LayerStats) -> np.ndarray[Any, np.dtype[np.uint8]]:
    """The layer's card as a ``CARD_PIXELS`` H x W x 3 uint8 array."""
    return figure_pixels(card_figure(layer))
