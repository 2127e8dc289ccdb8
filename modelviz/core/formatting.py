"""Formatting of shapes and numbers, shared by every renderer."""

from __future__ import annotations

from typing import Any

from modelviz.core.records import TensorMeta, Tree


def shape_text(tree: Tree | list[Tree], *, batch: str | None = None) -> str:
    """``[1, 64, 112, 112]``; containers keep their structure; ``batch`` replaces dimension 0."""
    if isinstance(tree, TensorMeta):
        dims = [str(d) for d in tree.shape]
        if batch is not None and dims:
            dims[0] = batch
        return "[" + ", ".join(dims) + "]"
    if isinstance(tree, (tuple, list)):
        parts = [shape_text(t, batch=batch) for t in tree]
        return "[" + ", ".join(parts) + "]"
    if isinstance(tree, dict):
        return "{" + ", ".join(f"{k}: {shape_text(v, batch=batch)}" for k, v in tree.items()) + "}"
    return "–"


def inputs_text(inputs: list[Tree]) -> str:
    """A module's inputs: the single tensor's shape, or a list of them."""
    if len(inputs) == 1:
        return shape_text(inputs[0])
    return shape_text(inputs) if inputs else "–"


def inputs_label(items: list[dict[str, Any]]) -> str:
    """The model's inputs for a title, from ``ModelInputs.describe``: ``input float32[1, 3]``,
    or, when there are several, ``inputs image float32[1, 3], extra float32[1, 10]``."""
    named = len(items) > 1  # then say which is which
    text = ", ".join((f"{i['name']} " if named else "")
                     + f"{i['dtype']}[{', '.join(map(str, i['shape']))}]" for i in items)
    return f"input{'s' if named else ''} {text}"


def human(value: float, unit: str = "") -> str:
    """1234567 -> '1.23 M'; keeps three significant digits."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f} {suffix}{unit}"
    return f"{value:.0f} {unit}".rstrip() if float(value).is_integer() else f"{value:.2f} {unit}"


def human_bytes(value: float) -> str:
    for threshold, suffix in ((1024**3, "GB"), (1024**2, "MB"), (1024, "KB")):
        if value >= threshold:
            return f"{value / threshold:.2f} {suffix}"
    return f"{value:.0f} B"


def count(value: int) -> str:
    return f"{value:,}"


def mb(value: float) -> str:
    return f"{value:0.2f}"


def totals_lines(totals: Any) -> list[tuple[str, str]]:
    """The footer every human-readable format shows, in torchsummary's wording."""
    lines = [
        ("Total params", count(totals.params)),
        ("Trainable params", count(totals.trainable_params)),
        ("Non-trainable params", count(totals.non_trainable_params)),
        ("FLOPs", f"{human(totals.flops)} ({count(totals.flops)})"),
        ("MACs", f"{human(totals.macs)} ({count(totals.macs)})"),
        ("Input size (MB)", mb(totals.input_size_mb)),
        ("Forward/backward pass size (MB)", mb(totals.forward_backward_size_mb)),
        ("Params size (MB)", mb(totals.params_size_mb)),
        ("Estimated Total Size (MB)", mb(totals.estimated_total_size_mb)),
    ]
    if totals.peak_memory_mb is not None:
        lines.append(("Measured peak CUDA memory (MB)", mb(totals.peak_memory_mb)))
    return lines
