"""``modelviz visdom``: the seed post's Visdom windows (text, images, plots) as one command."""

from __future__ import annotations

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

#: Written out (not imported from features.visdom.push) so that --help stays free of numpy.
DEFAULT_SERVER = "http://127.0.0.1"
DEFAULT_PORT = 8097


def visdom(
    model: ModelArg,
    sizes: SizesArg = None,
    server: Annotated[str, typer.Option(
        "--server", metavar="URL", help="The Visdom server's scheme and host.")
    ] = DEFAULT_SERVER,
    port: Annotated[int, typer.Option(
        "--port", min=1, max=65535, help="The Visdom server's port.")] = DEFAULT_PORT,
    env: Annotated[str | None, typer.Option(
        "--env", metavar="NAME", help="The Visdom environment. Default: modelviz_MODEL.")
    ] = None,
    layer: LayerOpt = None,
    module_type: TypeOpt = None,
    graph: Annotated[bool, typer.Option(
        "--graph/--no-graph", help="Push the module graph as SVG.")] = True,
    histograms: HistogramsOpt = True,
    memory: MemoryPeaksOpt = False,
    max_channels: MaxChannelsOpt = 16,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print what was pushed as JSON.")] = False,
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
    """Push to a running Visdom server: layer table, totals, graph, activation cards, histograms.

    Example: python -m visdom.server & modelviz visdom resnet18 --env resnet18
    """
    opts = ModelOptions.from_locals(locals())

    from modelviz.features.visdom.push import check_server, log_run
    from modelviz.features.visdom.view import render_push

    url = check_server(server, port)  # before the model is loaded: nothing to push to
    prepared = opts.load(quiet=as_json)
    with spinner(f"Pushing {opts.model} to Visdom at {url}", quiet=as_json):
        pushed = log_run(prepared, server=server, port=port, env=env, layers=layer or [],
                         types=module_type or [], graph=graph, histograms=histograms,
                         max_channels=max_channels, memory=memory, train=opts.train)
    for part, reason in pushed.skipped.items():
        note(f"no {part}: {reason}")
    if as_json:
        echo_json(pushed.to_dict())
        return
    print_out(render_push(pushed))
    note(f"view it: {pushed.url}/env/{pushed.env}")
