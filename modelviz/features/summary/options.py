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


@dataclass(frozen=True)
class TableOptions:
    depth: int | None = 3
    fold: bool = False
    columns: tuple[SummaryColumns, ...] = field(default_factory=tuple)
