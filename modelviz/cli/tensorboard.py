"""``modelviz tensorboard``: the seed posts' SummaryWriter routine as one command."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from modelviz.cli._console import note, print_out, spinner
from modelviz.cli._options import ModelOptions, model_command


@model_command
def tensorboard(
    opts: ModelOptions,
    logdir: Annotated[Path, typer.Option(
        "--logdir", metavar="DIR", help="The run's folder, e.g. runs/resnet18; TensorBoard "
        "reads its parent (tensorboard --logdir runs).")],
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", "-l", metavar="NAME",
        help="Log this module's activation image: a name or a glob; repeatable. Default: a "
             "few layers spread from input to output.")] = None,
    module_type: Annotated[list[str] | None, typer.Option(
        "--type", "-t", metavar="TYPE", help="Log every module of this type; repeatable.")
    ] = None,
    graph: Annotated[bool, typer.Option(
        "--graph/--no-graph", help="Trace the model for TensorBoard's Graphs tab.")] = True,
    histograms: Annotated[bool, typer.Option(
        "--histograms/--no-histograms", help="One histogram per parameter tensor.")] = True,
    max_channels: Annotated[int, typer.Option(
        "--max-channels", min=1, help="Most channel maps per activation image.")] = 16,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print what was written as JSON.")] = False,
) -> None:
    """Write a TensorBoard log: graph, parameter histograms, activation images, summary text.

    Example: modelviz tensorboard resnet18 --logdir runs/resnet18 && tensorboard --logdir runs
    """
    import json

    from rich.table import Table

    from modelviz.escape import printable
    from modelviz.features.tensorboard.log import write_run

    prepared = opts.load(quiet=as_json)
    with spinner(f"Logging {opts.model} to {logdir}", quiet=as_json):
        written = write_run(prepared, logdir, layers=layer or [], types=module_type or [],
                            graph=graph, histograms=histograms, max_channels=max_channels,
                            train=opts.train)
    for part, reason in written.skipped.items():
        note(f"no {part}: {reason}")
    if as_json:
        typer.echo(json.dumps(written.to_dict(), indent=2))
        return
    table = Table(title=printable(f"TensorBoard log in {logdir}"), title_justify="left",
                  header_style="bold")
    table.add_column("Tab")
    table.add_column("What")
    if graph:
        table.add_row("Graphs", f"{written.graph_nodes:,} nodes" if written.graph_nodes
                      else "not written (see the note above)")
    if histograms:
        table.add_row("Histograms", f"{len(written.histograms)} parameter tensors")
    table.add_row("Images", printable(", ".join(f"activations/{name}" for name in written.images))
                  or "–")
    table.add_row("Scalars", ", ".join(written.scalars))
    table.add_row("Text", "summary (the layer table as Markdown)")
    print_out(table)
    note(f"view it: tensorboard --logdir {logdir.parent if str(logdir.parent) != '.' else logdir}")
