"""The export's result for the terminal: file facts, inputs and outputs, parity, op counts."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelviz.core.formatting import dims_text, human_bytes
from modelviz.escape import printable

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


def _parity_table(result: ExportResult) -> RenderableType:
    """One row per output and batch size compared; the batch column only where there are two."""
    from rich.table import Table
    from rich.text import Text

    table = Table(title=f"ONNX Runtime vs torch (atol {result.atol:g})", title_justify="left",
                  header_style="bold")
    batches = result.batch_parity is not None
    if batches:
        table.add_column("Batch", justify="right")
    table.add_column("Output")
    table.add_column("Max abs error", justify="right")
    table.add_column("Max rel error", justify="right")
    table.add_column("")
    for check in [*(result.parity or []), *(result.batch_parity or [])]:
        batch = [str(check.batch) if check.batch is not None else "–"] if batches else []
        table.add_row(*batch, Text(printable(check.output)), f"{check.max_abs_error:.3g}",
                      f"{check.max_rel_error:.3g}", verdict(check))
    return table


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
    if result.batch_checked is not None:
        parts.append(Text(f"Dynamic batch: also ran at batch {result.batch_checked} in ONNX "
                          "Runtime" + (", values compared with torch's above"
                                       if result.batch_parity is not None else "")))
    for problem in result.problems:
        parts.append(Text.assemble(("problem: ", "bold red"), printable(problem)))
    return Group(*parts)
