"""``modelviz report``: every artifact of a model in one folder, with an offline index.html."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated

import typer

from modelviz.cli._console import echo_json, flags, note, print_out, spinner
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
from modelviz.errors import CheckFailed


def report(
    model: ModelArg,
    sizes: SizesArg = None,
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
    memory: Annotated[bool, typer.Option(
        "--memory/--no-memory", help="Plan the memory of inference and of a training step "
        "(Adam) at the batch size: memory.json.")] = True,
    profile: Annotated[bool, typer.Option(
        "--profile/--no-profile", help="Time each layer (5 runs): profile.json, a time column "
        "and the slowest layers. Skipped on the meta device.")] = True,
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
    """Write summary.json/.md, graph.svg, model.onnx with its parity check, activation grids,
    memory.json, profile.json and a self-contained index.html into one folder, for CI
    artifacts and review.

    Example: modelviz report resnet18 -o report/
    """
    opts = ModelOptions.from_locals(locals())

    from modelviz.core.specs import check_tolerance
    from modelviz.features.report import build as reports

    reports.check_folder(output)
    check_tolerance(atol)
    from modelviz.features.report.view import render_report

    prepared = opts.load(quiet=as_json)

    def stage(message: str) -> AbstractContextManager[None]:
        return spinner(message, quiet=as_json)

    result = reports.build(prepared, output, layers=tuple(layer or ()), depth=depth, onnx=onnx,
                           atol=atol, static=static, max_channels=max_channels,
                           train=opts.train, memory=memory, profile=profile, stage=stage,
                           terms=flags)
    if as_json:
        echo_json(result.to_dict())
    else:
        print_out(render_report(result, output, terms=flags))
        note(f"open {output / 'index.html'}")
    if not result.ok:
        failed = ", ".join(f"{p.name} ({p.status})" for p in result.failed)
        raise CheckFailed(f"{len(result.failed)} of {len(result.parts)} parts did not pass: "
                          f"{failed}.", f"The other parts are in {output}/; see index.html.")

