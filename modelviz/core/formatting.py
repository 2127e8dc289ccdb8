"""Formatting of shapes, numbers and bytes: the one place each is spelled, for every renderer.

Free of torch at module level (the record types are imported where they are needed), so that
torch-free code (the CLI, ``diff`` of two summary files) can use it too.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelviz.core.records import Tree


def dims_text(dims: Iterable[int | str]) -> str:
    """One shape: ``[1, 64, 112, 112]``; a str dimension (ONNX's symbolic ``batch``) as is.
    Every shape modelviz prints goes through here, so they all read the same."""
    return "[" + ", ".join(str(d) for d in dims) + "]"


def shape_text(tree: Tree | list[Tree], *, batch: str | None = None,
               classic: bool = False) -> str:
    """``[1, 64, 112, 112]``; containers keep their structure; ``batch`` replaces dimension 0.

    ``classic`` is torchsummary's spelling, kept for people who diff against its logs:
    ``[-1, 64, 112, 112]`` (-1 for the batch, even of a scalar), dict keys in quotes, and
    ``None`` for a value that is not a tensor.
    """
    from modelviz.core.records import TensorMeta

    quote = "'" if classic else ""

    def text(node: Tree | list[Tree]) -> str:
        if isinstance(node, TensorMeta):
            if classic:
                return dims_text((-1, *node.shape[1:]))
            dims: list[int | str] = list(node.shape)
            if batch is not None and dims:
                dims[0] = batch
            return dims_text(dims)
        if isinstance(node, (tuple, list)):
            return "[" + ", ".join(text(t) for t in node) + "]"
        if isinstance(node, dict):
            return "{" + ", ".join(f"{quote}{k}{quote}: {text(v)}" for k, v in node.items()) + "}"
        return "None" if classic else "–"

    return text(tree)


def flat_shapes_text(tree: Tree | list[Tree]) -> str:
    """Every tensor's shape inside ``tree``, flattened: ``[1, 3, 8, 8], [1, 10]``; empty if
    there is none. Error messages use it: the nesting matters less there than the shapes."""
    from modelviz.core.records import iter_metas

    return ", ".join(dims_text(meta.shape) for meta in iter_metas(tree))


def shape_json_text(value: Any) -> str:
    """A shape as a summary.json holds it (``records.shapes_json``), shown as that JSON:
    ``[1, 10]``, ``[[1, 10], [1, 5]]``, ``{"logits": [1, 10]}``, ``null``. Shapes read back
    from a file are shown as the file has them, so both sides of a diff read alike."""
    return json.dumps(value, separators=(", ", ": "))


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
                     + f"{i['dtype']}{dims_text(i['shape'])}" for i in items)
    return f"input{'s' if named else ''} {text}"


def human(value: float, unit: str = "") -> str:
    """1234567 -> '1.23 M'; keeps three significant digits."""
    for threshold, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f} {suffix}{unit}"
    return f"{value:.0f} {unit}".rstrip() if float(value).is_integer() else f"{value:.2f} {unit}"


def human_bytes(value: float) -> str:
    """1536 -> '1.50 KB': binary multiples, as memory is counted."""
    for threshold, suffix in ((1024**3, "GB"), (1024**2, "MB"), (1024, "KB")):
        if value >= threshold:
            return f"{value / threshold:.2f} {suffix}"
    return f"{value:.0f} B"


def binary_size(nbytes: int | None) -> str:
    """Binary units, as nvidia-smi and torch.cuda report them: 1 GiB = 2**30 bytes."""
    if nbytes is None:
        return "–"
    value = float(nbytes)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:,.0f} {unit}" if unit == "B" else f"{value:,.2f} {unit}"
        value /= 1024
    return f"{value:,.2f} TiB"  # pragma: no cover


def count(value: int) -> str:
    """1234567 -> '1,234,567': exact counts, grouped to be read at a glance."""
    return f"{value:,}"


def mb(value: float) -> str:
    """Megabytes with two decimals, as torchsummary prints them."""
    return f"{value:0.2f}"


def stat_text(value: float | None) -> str:
    """An activation statistic (mean, std, min, max) in four significant digits; '–' where
    there is none, so the terminal table and the pictures' titles agree."""
    return "–" if value is None else f"{value:.4g}"


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
