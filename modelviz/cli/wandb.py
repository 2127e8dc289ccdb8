"""``modelviz wandb``: the seed posts' wandb.init / wandb.log routine as one command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from modelviz.cli._console import echo_json, note, print_out, spinner
from modelviz.cli._dashboard import (
    HistogramsOpt,
    LayerOpt,
    MaxChannelsOpt,
    MemoryPeaksOpt,
    TypeOpt,
)
from modelviz.cli._options import (
    BatchOpt,
    DeviceOpt,
    DtypeOpt,
    ForwardArgOpt,
    InputFileOpt,
    KwargOpt,
    ModelArg,
    ModelOptions,
    SeedOpt,
    SizesArg,
    StrictOpt,
    TrainOpt,
    TrustPickleOpt,
    WeightsOpt,
)


def wandb(
    model: ModelArg,
    project: Annotated[str, typer.Option(
        "--project", "-p", metavar="NAME", help="The W&B project to log the run to.")],
    sizes: SizesArg = None,
    run_name: Annotated[str | None, typer.Option(
        "--run-name", "-n", metavar="NAME", help="The run's name; W&B picks one otherwise.")
    ] = None,
    offline: Annotated[bool, typer.Option(
        "--offline", help="Write the run locally, for `wandb sync` later: no account, no "
                          "network (as WANDB_MODE=offline).")] = False,
    folder: Annotated[Path | None, typer.Option(
        "--dir", metavar="DIR", help="Where W&B writes its local run folder (DIR/wandb/...). "
                                     "Default: $WANDB_DIR, else the current folder.")] = None,
    layer: LayerOpt = None,
    module_type: TypeOpt = None,
    graph: Annotated[bool, typer.Option(
        "--graph/--no-graph", help="Log the module graph: SVG and the interactive page.")] = True,
    histograms: HistogramsOpt = True,
    onnx: Annotated[bool, typer.Option(
        "--onnx/--no-onnx", help="Export and verify the model; the ONNX file joins "
                                 "summary.json in the run's artifact.")] = True,
    static: Annotated[bool, typer.Option(
        "--static", help="Export the ONNX file with a fixed batch: faster than the default "
                         "dynamic batch.")] = False,
    memory: MemoryPeaksOpt = False,
    max_channels: MaxChannelsOpt = 16,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print what was logged as JSON.")] = False,
    device: DeviceOpt = "auto",
    dtype: DtypeOpt = None,
    batch_size: BatchOpt = 1,
    kwarg: KwargOpt = None,
    forward_arg: ForwardArgOpt = None,
    weights: WeightsOpt = None,
    strict: StrictOpt = True,
    trust_pickle: TrustPickleOpt = False,
    input_file: InputFileOpt = None,
    seed: SeedOpt = 0,
    train: TrainOpt = False,
) -> None:
    """Log a W&B run: layer table, totals, graph, activation cards, histograms, ONNX artifact.

    Example: modelviz wandb resnet18 --project my-models --offline && wandb sync wandb/offline-*
    """
    opts = ModelOptions.from_locals(locals())
    # W&B's usage telemetry (online) logs its own export failures on stderr: not ours to show
    logging.getLogger("opentelemetry").setLevel(logging.CRITICAL)

    from modelviz.features.wandb.log import check_ready, log_run
    from modelviz.features.wandb.view import render_run

    # no wandb, no login, a bad project: said before the model is loaded
    if check_ready(project=project, offline=offline, folder=folder) == "disabled":
        note("WANDB_MODE=disabled: nothing logged.")
        return
    prepared = opts.load(quiet=as_json)
    with spinner(f"Logging {opts.model} to W&B", quiet=as_json):
        logged = log_run(prepared, project=project, run_name=run_name, offline=offline,
                         folder=folder, layers=layer or [], types=module_type or [],
                         graph=graph, histograms=histograms, onnx=onnx, static=static,
                         max_channels=max_channels, memory=memory, train=opts.train)
    for part, reason in logged.skipped.items():
        note(f"no {part}: {reason}")
    if as_json:
        echo_json(logged.to_dict())
        return
    print_out(render_run(logged))
    if logged.url:
        note(f"view it: {logged.url}")
    elif logged.run_dir is not None:
        note(f"sync it: wandb sync {logged.run_dir}")
