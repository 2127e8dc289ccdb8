"""The layer table's content: rows in display order, folding, and totals, from a ``Trace``.

Totals use torchsummary's definitions so the classic figures match old logs: input size is the
bytes of the inputs, the forward/backward pass size is twice the bytes of the outputs of every
module call except the root and bare ``Sequential``/``ModuleList`` containers, and the params size
is the bytes of the parameters (each shared parameter once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelviz.core.flops import macs
from modelviz.core.formatting import count, human, human_bytes
from modelviz.core.hierarchy import block_runs, fold_label, ordered_children
from modelviz.core.records import ModuleRecord, Trace, dtypes_json, shapes_json

if TYPE_CHECKING:
    from modelviz.core.session import Prepared

MB = 1024**2
#: Where an uncounted op ran when it ran in the root module's own ``forward``.
ROOT_PLACE = "the model's forward"
SCHEMA = "modelviz.summary/1"
_FLOAT = re.compile(r"b?float\d+$")


@dataclass(frozen=True)
class Totals:
    params: int
    trainable_params: int
    non_trainable_params: int
    flops: int
    macs: int
    input_size_mb: float
    forward_backward_size_mb: float
    params_size_mb: float
    estimated_total_size_mb: float
    buffers_size_mb: float
    peak_memory_mb: float | None = None  # measured, CUDA only
    #: how many of ``flops`` ran in integer kernels (quantized conv/linear/LSTM, torch._int_mm)
    int_flops: int = 0
    #: dtype -> {"params", "bytes"}, most parameters first: a quantized model's weights are int8,
    #: and its params size is not 4 bytes a parameter
    param_dtypes: dict[str, dict[str, int]] = field(default_factory=dict)
    #: how many of ``params`` are weights outside nn.Parameters (torch.ao packed params, integer
    #: weight buffers), counted from their storage
    packed_params: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: (round(v, 4) if isinstance(v, float) else v) for k, v in vars(self).items()}


def counted_in_memory(record: ModuleRecord) -> bool:
    """The module calls torchsummary hooks: all but the root and bare containers."""
    return bool(record.name) and not record.extra.get("container")


def compute_totals(trace: Trace) -> Totals:
    outputs = sum(call.output_bytes for call in trace.calls
                  if counted_in_memory(trace.modules[call.module]))
    input_mb = trace.input_bytes / MB
    forward_backward_mb = 2 * outputs / MB
    params_mb = trace.param_bytes / MB
    return Totals(
        params=trace.params,
        trainable_params=trace.trainable_params,
        non_trainable_params=trace.params - trace.trainable_params,
        flops=trace.flops,
        macs=macs(trace.flops),
        input_size_mb=input_mb,
        forward_backward_size_mb=forward_backward_mb,
        params_size_mb=params_mb,
        estimated_total_size_mb=input_mb + forward_backward_mb + params_mb,
        buffers_size_mb=trace.buffer_bytes / MB,
        peak_memory_mb=(trace.peak_memory_bytes / MB
                        if trace.peak_memory_bytes is not None else None),
        int_flops=trace.int_flops,
        param_dtypes={dtype: {"params": n, "bytes": nbytes}
                      for dtype, (n, nbytes) in trace.param_dtypes.items()},
        packed_params=sum(m.packed for m in trace.modules.values()),
    )


@dataclass
class Row:
    """One line of the table: a module, or a run of identical sibling modules folded into one."""

    record: ModuleRecord
    depth: int
    members: list[ModuleRecord] = field(default_factory=list)  # >1 when folded

    @property
    def count(self) -> int:
        return max(1, len(self.members))

    @property
    def name(self) -> str:
        if self.count == 1:
            return self.record.name
        return fold_label([m.name for m in self.members])

    def total(self, attribute: str) -> int:
        group = self.members or [self.record]
        return sum(int(getattr(m, attribute)) for m in group)


def rows(trace: Trace, *, depth: int | None = None, fold: bool = False) -> list[Row]:
    """Rows in display order: the hierarchy, children in execution order, down to ``depth``."""
    out: list[Row] = []
    memo: dict[str, tuple[Any, ...]] = {}

    def visit(name: str, level: int) -> None:
        if depth is not None and level > depth:
            return
        runs = (block_runs(trace, name, memo) if fold
                else [[c] for c in ordered_children(trace, name)])
        for run in runs:
            out.append(Row(run[0], level, run if len(run) > 1 else []))
            visit(run[0].name, level + 1)

    visit("", 1)
    return out


def layer_dict(record: ModuleRecord) -> dict[str, Any]:
    call = record.first_call
    return {
        "name": record.name,
        "type": record.type,
        "depth": record.depth,
        "parent": record.parent,
        "calls": len(record.calls),
        "input_shapes": shapes_json(call.inputs) if call else None,
        "output_shapes": shapes_json(call.output) if call else None,
        "output_dtypes": dtypes_json(call.output) if call else None,
        "params": record.params_total,
        "params_own": record.params,
        "trainable": record.trainable_total,
        "param_dtypes": dict(record.param_dtypes),
        "param_bytes": record.param_bytes,
        "flops": record.flops,
        "int_flops": record.int_flops,
        "macs": macs(record.flops),
        "output_bytes": record.output_bytes,
        "kernel_size": record.extra.get("kernel_size"),
        "shared": dict(record.shared),
        "opaque_weights": list(record.opaque),
    }


@dataclass
class Summary:
    """What ``modelviz summary`` shows; the renderers beside this module turn it into text."""

    model: str
    trace: Trace
    inputs: list[dict[str, Any]]
    batch_size: int = 1
    totals: Totals = field(init=False)

    def __post_init__(self) -> None:
        self.totals = compute_totals(self.trace)

    def rows(self, depth: int | None = None, fold: bool = False) -> list[Row]:
        return rows(self.trace, depth=depth, fold=fold)

    def shared_parameters(self) -> list[tuple[str, str]]:
        """(parameter, the parameter it is) for every tied weight, counted once in the totals."""
        return [(f"{r.name}.{p}" if r.name else p, owner)
                for r in self.trace.modules.values() for p, owner in r.shared.items()]

    def not_counted(self) -> list[tuple[str, list[str]]]:
        """(op, where it ran) for each op that does matrix arithmetic but has no FLOP formula:
        the FLOPs figure is missing its work, and every output says so beside it. Where is a
        module's name, or ``the model's forward`` for code in the root's own ``forward``."""
        return [(op, [m or ROOT_PLACE for m in modules])
                for op, modules in self.trace.uncounted.items()]

    def storage_notes(self) -> list[str]:
        """What the parameter count alone hides, one line each, only where it applies: weights
        that are not all float32 (a quantized model's int8), FLOPs that are integer, and integer
        weights counted as stored because nothing says how many values an element packs."""
        notes: list[str] = []
        totals = self.totals
        dtypes = totals.param_dtypes
        if len(dtypes) > 1 or any(not _FLOAT.match(d) for d in dtypes):  # not one float dtype
            parts = [f"{count(d['params'])} {dtype} ({human_bytes(d['bytes'])})"
                     for dtype, d in dtypes.items()]
            packed = (f"; {count(totals.packed_params)} of them held outside nn.Parameters "
                      "(packed quantized weights, integer weight buffers)"
                      if totals.packed_params else "")
            notes.append(f"Params by dtype: {', '.join(parts)}{packed}")
        if totals.int_flops:
            notes.append(f"Integer FLOPs (quantized kernels): {human(totals.int_flops)} of "
                         f"{human(totals.flops)} ({count(totals.int_flops)})")
        opaque = [f"{r.name}.{w}" if r.name else w
                  for r in self.trace.modules.values() for w in r.opaque]
        if opaque:
            shown = ", ".join(opaque[:3]) + (f" and {len(opaque) - 3} more" if len(opaque) > 3
                                             else "")
            notes.append(f"Counted as stored, one value per element (an integer dtype that may "
                         f"pack several, with nothing saying how many): {shown}")
        return notes

    def __str__(self) -> str:
        from modelviz.features.summary.options import TableOptions
        from modelviz.features.summary.table import plain_text, render_table

        return plain_text(render_table(self, TableOptions()))

    def to_dict(self) -> dict[str, Any]:
        """The documented JSON form (docs/json.md); every module, whatever the display depth."""
        return {
            "schema": SCHEMA,
            "model": self.model,
            "model_type": self.trace.model_type,
            "device": self.trace.device,
            "dtype": self.trace.dtype,
            "batch_size": self.batch_size,
            "inputs": self.inputs,
            "outputs": shapes_json(self.trace.output),
            "totals": self.totals.as_dict(),
            "layers": [layer_dict(r) for r in self.trace.modules.values() if r.name],
            "not_counted": dict(self.trace.uncounted),
        }


def summarize(prepared: Prepared, trace: Trace) -> Summary:
    """The summary of a pass over ``prepared`` (``core.session.run``)."""
    return Summary(model=prepared.loaded.name, trace=trace,
                   inputs=prepared.inputs.describe(prepared.model), batch_size=prepared.batch_size)
