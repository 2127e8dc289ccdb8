"""torchsummary's layout, line for line, for people who diff against old logs.

One row per module call in the order calls finished, skipping the root and bare
``Sequential``/``ModuleList`` containers, named ``Type-N``, with -1 for the batch dimension.
Types and shapes (dict keys) go through ``printable``: they are the user's text, shown on a
terminal.
"""

from __future__ import annotations

from modelviz.core.formatting import count, mb, shape_text
from modelviz.escape import printable
from modelviz.features.summary.summary import Summary, counted_in_memory

RULE = "-" * 64
DOUBLE_RULE = "=" * 64


def render_classic(summary: Summary) -> str:
    trace = summary.trace
    lines = [RULE, "{:>20}  {:>25} {:>15}".format("Layer (type)", "Output Shape", "Param #"),
             DOUBLE_RULE]
    calls = sorted((c for c in trace.calls
                    if c.end_index >= 0 and counted_in_memory(trace.modules[c.module])),
                   key=lambda c: c.end_index)
    for number, call in enumerate(calls, start=1):
        record = trace.modules[call.module]
        own = record.params + record.shared_params  # a tied weight shows on each of its users
        shape = shape_text(call.output, classic=True)  # torchsummary's [-1, 64, 112, 112]
        lines.append("{:>20}  {:>25} {:>15}".format(
            f"{printable(record.type)}-{number}", printable(shape), count(own)))
    totals = summary.totals
    lines += [
        DOUBLE_RULE,
        f"Total params: {count(totals.params)}",
        f"Trainable params: {count(totals.trainable_params)}",
        f"Non-trainable params: {count(totals.non_trainable_params)}",
        RULE,
        f"Input size (MB): {mb(totals.input_size_mb)}",
        f"Forward/backward pass size (MB): {mb(totals.forward_backward_size_mb)}",
        f"Params size (MB): {mb(totals.params_size_mb)}",
        f"Estimated Total Size (MB): {mb(totals.estimated_total_size_mb)}",
        RULE,
    ]
    return "\n".join(lines) + "\n"
