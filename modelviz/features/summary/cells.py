"""The cells of a layer row, shared by the Rich table and the Markdown table.

Every cell is already through ``printable``: a name or type from the user's model (and a dict key
in a shape) never carries a raw control character to the terminal or to the Markdown renderer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelviz.core.flops import macs
from modelviz.core.formatting import (
    count,
    human,
    human_bytes,
    inputs_text,
    shape_text,
    totals_lines,
)
from modelviz.core.hierarchy import blocks_depth as hierarchy_blocks_depth
from modelviz.escape import printable
from modelviz.features.summary.options import MAX_REACH, SummaryColumns, TableOptions

if TYPE_CHECKING:  # the summary renders itself with this module (__str__)
    from modelviz.features.summary.summary import Row, Summary

#: The footer's FLOPs and MACs, each with its convention: torchvision's "GFLOPS" and ptflops'
#: "GMac" are both multiply-adds, so a bare "FLOPs" beside them is off by two for half the
#: readers. The columns keep the short headers; these lines say what they count.
UNIT_LABELS = {
    "FLOPs": "FLOPs (multiply and add counted as 2)",
    "MACs": "MACs (torchvision's GFLOPS, ptflops' GMac)",
}

HEADERS: dict[SummaryColumns | str, str] = {
    "layer": "Layer (type)",
    SummaryColumns.input_shape: "Input Shape",
    "output_shape": "Output Shape",
    "params": "Param #",
    SummaryColumns.kernel_size: "Kernel",
    SummaryColumns.params_percent: "Params %",
    SummaryColumns.trainable: "Trainable",
    SummaryColumns.flops: "FLOPs",
    SummaryColumns.macs: "MACs",
    SummaryColumns.output_memory: "Output Memory",
}


@dataclass(frozen=True)
class LayerCells:
    name: str
    type: str  # with "×N" when folded, "· N calls" when called more than once
    values: dict[SummaryColumns | str, str]
    shared: bool
    called: bool


def column_keys(columns: tuple[SummaryColumns, ...]) -> list[SummaryColumns | str]:
    keys: list[SummaryColumns | str] = []
    if SummaryColumns.input_shape in columns:
        keys.append(SummaryColumns.input_shape)
    keys += ["output_shape", "params"]
    keys += [c for c in SummaryColumns if c in columns and c is not SummaryColumns.input_shape]
    return keys


def _trainable(row: Row) -> str:
    total, trainable = row.total("params_total"), row.total("trainable_total")
    if not total:
        return "–"
    return "yes" if trainable == total else ("no" if trainable == 0 else "partial")


def cells(row: Row, total_params: int, columns: tuple[SummaryColumns, ...]) -> LayerCells:
    record = row.record
    call = record.first_call
    params = row.total("params_total")
    type_label = printable(record.type)
    if row.count > 1:
        type_label += f" ×{row.count}"
    elif len(record.calls) > 1:
        type_label += f" · {len(record.calls)} calls"
    shared = any(m.shared for m in (row.members or [record]))
    kernel = record.extra.get("kernel_size")
    values: dict[SummaryColumns | str, str] = {
        SummaryColumns.input_shape: inputs_text(call.inputs) if call else "–",
        "output_shape": shape_text(call.output) if call else (
            "–" if record.extra.get("container") else "not called"),
        "params": count(params) + (" *" if shared else ""),
        SummaryColumns.kernel_size: "x".join(map(str, kernel)) if kernel else "–",
        SummaryColumns.params_percent: f"{100 * params / total_params:.2f}%"
        if total_params and params else "–",
        SummaryColumns.trainable: _trainable(row),
        SummaryColumns.flops: human(row.total("flops")) if row.total("flops") else "–",
        SummaryColumns.macs: human(macs(row.total("flops"))) if row.total("flops") else "–",
        SummaryColumns.output_memory: human_bytes(row.total("output_bytes"))
        if call else "–",
    }
    keys = column_keys(columns)
    return LayerCells(printable(row.name), type_label, {k: printable(values[k]) for k in keys},
                      shared, call is not None or bool(record.extra.get("container")))


def footer_lines(totals: object) -> list[tuple[str, str]]:
    """The totals every human-readable table ends with, FLOPs and MACs named with their unit."""
    return [(UNIT_LABELS.get(label, label), value) for label, value in totals_lines(totals)]


def blocks_depth(summary: Summary) -> int:
    """The depth of the summary's first repeated blocks (``core.hierarchy.blocks_depth``)."""
    return hierarchy_blocks_depth(summary.trace, MAX_REACH)


def display_depth(summary: Summary, options: TableOptions) -> int | None:
    """``options.depth``, or deeper to reach the repeated blocks (see ``TableOptions``)."""
    if options.depth is None or not options.reach_blocks:
        return options.depth
    return max(options.depth, blocks_depth(summary))


def display_rows(summary: Summary, options: TableOptions) -> list[Row]:
    """The rows a table shows, at the depth ``display_depth`` picks."""
    return summary.rows(depth=display_depth(summary, options), fold=options.fold)
