"""The cells of a layer row, shared by the Rich table and the Markdown table.

Every cell is already through ``printable``: a name or type from the user's model (and a dict key
in a shape) never carries a raw control character to the terminal or to the Markdown renderer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelviz.core.flops import macs
from modelviz.core.formatting import count, human, human_bytes, inputs_text, shape_text
from modelviz.escape import printable
from modelviz.features.summary.options import SummaryColumns

if TYPE_CHECKING:  # the summary renders itself with this module (__str__)
    from modelviz.features.summary.summary import Row

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
