"""``modelviz tensorboard``: the seed posts' SummaryWriter routine as one command."""

from __future__ import annotations

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


def tensorboard(
    model: ModelArg,
    logdir: Annotated[Path, typer.Option(
        "--logdir", metavar="DIR", help="The run's folder, e.g. runs/resnet18; TensorBoard "
        "reads its parent (tensorboard --logdir runs).")],
    sizes: SizesArg = None,
    layer: LayerOpt = None,
    module_type: TypeOpt = None,
    graph: Annotated[bool, typer.Option(
        "--graph/--no-graph", help="Trace the model for TensorBoard's Graphs tab.")] = True,
    histograms: HistogramsOpt = True,
    memory: MemoryPeaksOpt = False,
    max_channels: MaxChannelsOpt = 16,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print what was written as JSON.")] = False,
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
    """Write a TensorBoard log: graph, parameter histograms, activation cards, summary text.

    Example: modelviz tensorboard resnet18 --logdir runs/resnet18 && tensorboard --logdir runs
    """
    opts = ModelOptions.from_locals(locals())

    from modelviz.features.tensorboard.log import write_run
    from modelviz.features.tensorboard.view import render_log

    prepared = opts.load(quiet=as_json)
    with spinner(f"Logging {opts.model} to {logdir}", quiet=as_json):
        written = write_run(prepared, logdir, layers=layer or [], types=module_type or [],
                            graph=graph, histograms=histograms, max_channels=max_channels,
                            memory=memory, train=opts.train)
    for part, reason in written.skipped.items():
        note(f"no {part}: {reason}")
    if as_json:
        echo_json(written.to_dict())
        return
    print_out(render_log(written, logdir, graph=graph, histograms=histograms))
    note(f"view it: tensorboard --logdir {logdir.parent if str(logdir.parent) != '.' else logdir}")
