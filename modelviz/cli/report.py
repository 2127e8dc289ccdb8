"""``modelviz report``: every artifact of a model in one folder, with an offline index.html."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelviz.cli._console import note, print_out, spinner
from modelviz.cli._options import ModelOptions, model_command
from modelviz.errors import CheckFailed

if TYPE_CHECKING:
    from modelviz.features.report import build as reports


@model_command
def report(
    opts: ModelOptions,
    output: Annotated[Path, typer.Option(
        "--output", "-o", metavar="DIR", help="The report's folder.")] = Path("report"),
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", "-l", metavar="NAME",
        help="Draw this layer's activations (name or glob); repeatable. Default: four layers "
             "spread from input to output.")] = None,
    depth: Annotated[int | None, typer.Option(
        "--depth", "-d", min=1, show_default=False,
        help="Depth of the module graph (default 2).")] = None,
    onnx: Annotated[bool, typer.Option(
        "--onnx/--no-onnx", help="Export model.onnx and check it in ONNX Runtime.")] = True,
    static: Annotated[bool, typer.Option(
        "--static", help="Export model.onnx with a fixed batch: faster, since a dynamic batch "
        "costs torch's exporter up to 2.5x.")] = False,
    atol: Annotated[float | None, typer.Option(
        "--atol", help="Largest absolute difference allowed between ONNX Runtime "
        "and torch. Default 1e-4; 1e-2 for float16 models.", show_default=False)] = None,
    max_channels: Annotated[int, typer.Option(
        "--max-channels", min=1, help="Most channel maps per activation grid.")] = 16,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print report.json to stdout.")] = False,
) -> None:
    """Write summary.json/.md, graph.svg, model.onnx with its parity check, activation grids
    and a self-contained index.html into one folder, for CI artifacts and review.

    Example: modelviz report resnet18 -o report/
    """
    import json

    from rich.table import Table
    from rich.text import Text

    from modelviz.core.specs import check_tolerance
    from modelviz.escape import printable
    from modelviz.features.report import build as reports

    reports.check_folder(output)
    check_tolerance(atol)
    prepared = opts.load(quiet=as_json)

    def stage(message: str) -> AbstractContextManager[None]:
        return spinner(message, quiet=as_json)

    result = reports.build(prepared, output, layers=tuple(layer or ()), depth=depth, onnx=onnx,
                           atol=atol, static=static, max_channels=max_channels,
                           train=opts.train, stage=stage)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        table = Table(title=printable(f"modelviz report of {result.model} in {output}"),
                      title_justify="left", header_style="bold")
        table.add_column("Part")
        table.add_column("Status")
        table.add_column("What", overflow="fold")
        table.add_column("Files or reason", overflow="fold")
        for part in result.parts.values():
            style = "green" if part.status == "ok" else "bold red"
            files = ", ".join(str(f.relative_to(output)) if f.is_relative_to(output) else str(f)
                              for f in part.files[:6])
            if len(part.files) > 6:
                files += f" and {len(part.files) - 6} more"
            reason = part.error or part.problem
            table.add_row(part.name, Text(part.status, style=style), _what(part), printable(
                (reason + (f" ({files})" if files else "")) if reason else files))
        print_out(table)
        note(f"open {output / 'index.html'}")
    if not result.ok:
        failed = ", ".join(f"{p.name} ({p.status})" for p in result.failed)
        raise CheckFailed(f"{len(result.failed)} of {len(result.parts)} parts did not pass: "
                          f"{failed}.", f"The other parts are in {output}/; see index.html.")


def _what(part: reports.Part) -> str:
    """The one number a reviewer looks for first in each part."""
    from modelviz.core.formatting import human

    data = part.data
    if part.name == "summary" and "params" in data:
        return f"{data['params']:,} params, {human(data['flops'])}FLOPs"
    if part.name == "graph" and "nodes" in data:
        return f"{data['nodes']} nodes"
    if part.name == "activations" and data.get("layers"):
        return f"{len(data['layers'])} layers"
    if part.name == "onnx" and data.get("parity"):
        worst = max(p["max_abs_error"] for p in data["parity"])
        return f"max error {worst:.2g}, {data['node_count']} nodes"
    return ""
