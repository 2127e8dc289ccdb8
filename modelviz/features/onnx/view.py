"""The export's result for the terminal: file facts, inputs and outputs, parity, op counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelviz.core.formatting import dims_text, human_bytes
from modelviz.escape import printable
from modelviz.features.onnx.result import sizes_text

if TYPE_CHECKING:
    from rich.console import RenderableType
    from rich.text import Text

    from modelviz.features.onnx.result import ExportResult, Parity

#: Op types listed by name in the node line; the rest are summed as "N more".
TOP_OPS = 8


def ops_text(counts: dict[str, int], top: int = TOP_OPS) -> str:
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{op} {n}" for op, n in items[:top])
    rest = items[top:]
    if rest:
        text += f", {len(rest)} more types ({sum(n for _, n in rest)} nodes)"
    return text


def verdict(check: Parity) -> Text:
    """A check's cell: an uninformative pass is told apart from one that proves something,
    since it cannot tell a right file from a wrong one. A styled Text, not markup: the console
    prints strings as they are."""
    from rich.text import Text

    if not check.ok:
        return Text("over atol", style="bold red")
    return Text("ok", style="green") if check.informative else Text("ok, uninformative",
                                                                     style="yellow")


def _beyond_batch(result: ExportResult) -> bool:
    """Whether a dynamic axis other than the batch was checked: then the table says every
    axis's size, not only the batch."""
    return any(set(p.sizes or {}) - {"batch"}
               for p in [*(result.parity or []), *(result.batch_parity or [])])


def _parity_table(result: ExportResult) -> RenderableType:
    """One row per output and run; the batch (or every dynamic axis's size) only where there
    are two runs."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"ONNX Runtime vs torch (atol {result.atol:g})", title_justify="left",
                  header_style="bold")
    runs = result.batch_parity is not None
    sizes = runs and _beyond_batch(result)
    if runs:
        table.add_column("Sizes" if sizes else "Batch", justify="left" if sizes else "right")
    table.add_column("Output")
    table.add_column("Max abs error", justify="right")
    table.add_column("Max rel error", justify="right")
    table.add_column("")
    for check in [*(result.parity or []), *(result.batch_parity or [])]:
        run = [] if not runs else [sizes_text(check.sizes)] if sizes else [
            str(check.batch) if check.batch is not None else "–"]
        table.add_row(*run, Text(printable(check.output)), f"{check.max_abs_error:.3g}",
                      f"{check.max_rel_error:.3g}", verdict(check))
    return table


def compared_text(result: ExportResult) -> str | None:
    """Which outputs were compared as sets of detections, and how, when any were."""
    from modelviz.features.onnx.compare import DETECTION_RTOL, MASK_MEAN_TOL, MIN_IOU

    matched = list(dict.fromkeys(p.output for p in result.parity or []
                                 if p.comparison != "elementwise"))
    if not matched:
        return None
    masks = "masks" in matched
    return (f"{', '.join(matched)} as sets of detections: each torch detection paired "
            f"with ONNX Runtime's of the same label that overlaps it most (IoU ≥ {MIN_IOU:g}), "
            "since tied scores put the same detections in another order, and the pairs within "
            f"{DETECTION_RTOL:.1%} of each output's largest value (or atol)"
            + (f"; masks by their mean difference per detection, within {MASK_MEAN_TOL:g} "
               "(pasted at whole pixels)" if masks else "") + "; the rest element by element")


def failure_text(result: ExportResult) -> str:
    """What failed, in one sentence: the problems, or the worst output and where it starts."""
    worst = result.worst
    if result.problems:
        text = "; ".join(result.problems)
    elif worst is not None:
        text = (f"ONNX Runtime differs from torch by {worst.max_abs_error:.3g} on "
                f"{worst.output}, beyond `atol` {result.atol:g}")
    else:
        text = "verification failed"
    if result.divergence is not None:
        text += f"; {result.divergence.text()}"
    return text


def advice(result: ExportResult) -> str:
    """The fix when nothing more specific is known: float16's rounding, or a looser atol."""
    if result.atol >= 1e-2:
        return "Look for float16 or nondeterministic ops, or raise `atol` if the difference is " \
               "acceptable."
    return "Raise `atol` if the difference is acceptable."


def render_export(result: ExportResult) -> RenderableType:
    """A Rich table of what the file declares and how it compared with torch."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    files = printable(", ".join(f.name for f in result.data_files))
    facts = Text.assemble(("File ", "bold"), f"{printable(str(result.path))} "
                          f"({human_bytes(result.file_bytes)}"
                          + (f", weights in {files}" if files else ", self-contained")
                          + f"), opset {result.opset}, {result.exporter} exporter")
    table = Table(header_style="bold")
    table.add_column("")
    table.add_column("Name")
    table.add_column("Type")
    table.add_column("Shape")
    for kind, infos in (("input", result.inputs), ("output", result.outputs)):
        for info in infos:
            table.add_row(kind, Text(printable(info.name)), info.dtype,
                          Text(printable(dims_text(info.shape))))
    parts: list[RenderableType] = [facts, table]
    parts.append(Text.assemble(("Nodes ", "bold"), f"{result.node_count:,}: ",
                               ops_text(result.op_counts)))
    parts.append(Text.assemble(("Checks ", "bold"), "onnx.checker full check with shape "
                               "inference passed"))
    if result.parity is not None:
        parts.append(_parity_table(result))
        seen: set[str] = set()
        for check in [*result.parity, *(result.batch_parity or [])]:
            if check.uninformative and check.uninformative not in seen:
                seen.add(check.uninformative)
                parts.append(Text.assemble(
                    ("uninformative: ", "bold yellow"), printable(check.uninformative),
                    ", so this check proves next to nothing about the file"))
    compared = compared_text(result)
    if compared:
        parts.append(Text.assemble(("Compared ", "bold"), printable(compared)))
    if result.sizes_checked and set(result.sizes_checked) - {"batch"}:
        parts.append(Text(f"Dynamic axes: also ran at {sizes_text(result.sizes_checked)} in "
                          "ONNX Runtime" + (", values compared with torch's above"
                                            if result.batch_parity is not None else "")))
    elif result.batch_checked is not None:
        parts.append(Text(f"Dynamic batch: also ran at batch {result.batch_checked} in ONNX "
                          "Runtime" + (", values compared with torch's above"
                                       if result.batch_parity is not None else "")))
    if result.divergence is not None:
        parts.append(Text.assemble(("First divergence ", "bold red"),
                                   printable(result.divergence.text())))
    elif result.divergence_unknown:
        parts.append(Text.assemble(("First divergence ", "bold"),
                                   f"not found: {printable(result.divergence_unknown)}"))
    if result.optimization is not None:
        o = result.optimization
        parts.append(Text.assemble(
            ("Optimised ", "bold"), f"by {o.tool}: {o.nodes_before:,} nodes to "
            f"{o.nodes_after:,}, {human_bytes(o.bytes_before)} to {human_bytes(o.bytes_after)}"
            + ("" if o.kept else f"; not kept: {printable(o.reason or '')}")))
    for problem in result.problems:
        parts.append(Text.assemble(("problem: ", "bold red"), printable(problem)))
    return Group(*parts)
