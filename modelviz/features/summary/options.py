"""Options shared by the human-readable renderers (table, markdown)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum


class SummaryColumns(str, Enum):
    """Optional columns of the layer table (Layer, Output Shape and Param # are always shown)."""

    input_shape = "input_shape"
    kernel_size = "kernel_size"
    params_percent = "params_percent"
    trainable = "trainable"
    flops = "flops"
    macs = "macs"
    output_memory = "output_memory"


ALL_COLUMNS = tuple(SummaryColumns)

#: Three levels show a model's parts and their blocks (ResNet's stages and BasicBlocks, a
#: decoder's layers) without listing every Linear inside them.
DEFAULT_DEPTH = 3
#: How deep ``reach_blocks`` may go: past that, a model nests its blocks too deep to be
#: summarised by depth alone (``--depth`` still goes anywhere). ``core.hierarchy.MAX_REACH``,
#: written out: this module is read at start-up, before torch, which ``core.hierarchy`` imports
#: (tests/test_layout.py checks that the two agree).
MAX_REACH = 6


@dataclass(frozen=True)
class TableOptions:
    """What the human-readable tables show.

    ``fold`` (on by default, as in ``graph``) turns ``layers.0`` ... ``layers.31`` into one
    ``layers.0–31 ×32`` row: a 7B model's table fits on a screen. ``reach_blocks`` makes
    ``depth`` a floor rather than a limit: the rows go as deep as the first run of repeated
    numbered blocks on each branch (CLIP's ``vision_model.encoder.layers.0–11`` sit at depth 4),
    so the default shows the blocks a model is made of; the CLI turns it off when ``--depth``
    is given."""

    depth: int | None = DEFAULT_DEPTH
    fold: bool = True
    columns: tuple[SummaryColumns, ...] = field(default_factory=tuple)
    reach_blocks: bool = True
