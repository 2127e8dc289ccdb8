"""``modelviz export-onnx``: a checked, numerically verified ONNX file, ready for Netron."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated

import typer

from modelviz.cli._console import echo_json, note, print_out, spinner
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
from modelviz.cli.netron import HostOpt, PortOpt, serve_until_stopped
from modelviz.errors import CheckFailed


def export_onnx(
    model: ModelArg,
    sizes: SizesArg = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="FILE.onnx", show_default=False,
        help="Where to write; default: MODEL's name + .onnx here.")] = None,
    exporter: Annotated[str, typer.Option(
        "--exporter", metavar="auto|dynamo|torchscript",
        help="auto: the dynamo exporter, the TorchScript one if it fails.")] = "auto",
    opset: Annotated[int | None, typer.Option(
        "--opset", show_default=False, help="ONNX opset (default: the exporter's).")] = None,
    static: Annotated[bool, typer.Option(
        "--static", help="Fix the batch dimension instead of leaving it dynamic.")] = False,
    dynamic: Annotated[list[str] | None, typer.Option(
        "--dynamic", metavar="auto|batch|seq|none|INPUT:AXIS=NAME",
        help="Axes that may vary: auto (a dynamic batch where the file allows one, else fixed "
        "with a note), batch (dynamic or fail), seq (the batch and token inputs' length), none, "
        "or one axis of one input, e.g. input_ids:1=seq (the batch is axis 0); repeatable. "
        "Each is checked in the file, and run at a second size in ONNX Runtime.",
        show_default=False)] = None,
    with_cache: Annotated[bool, typer.Option(
        "--with-cache", help="A language model's decoder step with its KV cache: "
        "past_key_values.N.key/.value in, present.N.key/.value out (optimum's layout). "
        "Without it, language models are exported without the cache.")] = False,
    optimize: Annotated[bool, typer.Option(
        "--optimize", help="Run onnxslim's graph optimisations, check parity again, and keep "
        "the result only if it still matches torch.")] = False,
    atol: Annotated[float | None, typer.Option(
        "--atol", help="Largest absolute difference allowed between ONNX Runtime and torch; "
        "beyond it, exit status 1. Default 1e-4; 1e-2 for float16 models.",
        show_default=False)] = None,
    verify: Annotated[bool, typer.Option(
        "--verify/--no-verify", help="Run the file in ONNX Runtime and compare with torch.")
    ] = True,
    external_data: Annotated[bool, typer.Option(
        "--external-data", help="Put the weights in FILE.onnx.data even under 2 GB (over 2 GB "
        "they always are).")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the result as JSON.")] = False,
    open_netron: Annotated[bool, typer.Option(
        "--open", help="Then serve the file to Netron and open it in the browser.")] = False,
    port: PortOpt = 8080,
    host: HostOpt = "127.0.0.1",
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
    """Export to ONNX, run onnx.checker, and compare ONNX Runtime's output with torch's.

    Example: modelviz export-onnx resnet18 -o resnet18.onnx --open
    """
    opts = ModelOptions.from_locals(locals())
    from modelviz.core.specs import check_tolerance
    from modelviz.features.onnx.axes import parse_dynamic
    from modelviz.features.onnx.result import check_output

    if output is not None:
        check_output(output)
    check_tolerance(atol)
    spec = parse_dynamic(dynamic, static=static)

    from modelviz.features.onnx import export as onnx_export
    from modelviz.features.onnx.view import advice, failure_text, render_export

    prepared = opts.load(quiet=as_json)
    target = output or Path(_file_name(prepared.loaded.name) + ".onnx")

    def stage(message: str) -> AbstractContextManager[None]:
        return spinner(message, quiet=as_json)

    result = onnx_export.export(prepared, target, exporter=exporter, opset=opset,
                                dynamic=spec, with_cache=with_cache, optimize=optimize,
                                verify=verify, atol=atol,
                                external_data=True if external_data else None,
                                train=opts.train, stage=stage)
    for message in result.notes:
        note(message)
    if as_json:
        echo_json(result.to_dict())
    else:
        print_out(render_export(result))
    if not result.ok:
        raise CheckFailed(f"{target} was written, but {failure_text(result)}.",
                          result.advice or advice(result))
    if open_netron:
        serve_until_stopped(target, host=host, port=port, browse=True)


def _file_name(model_name: str) -> str:
    """A file name from MODEL: "sample_models.seeds:Net" and "pkg.mod.Net" -> "Net",
    "runs/best.pt" -> "best", "resnet18" -> "resnet18"."""
    import re

    from modelviz.core.specs import MODEL_FILE_SUFFIXES

    last = re.split(r"[:/\\]", model_name.strip())[-1]
    stem, dot, suffix = last.rpartition(".")
    if dot:
        last = stem if f".{suffix.lower()}" in MODEL_FILE_SUFFIXES else suffix
    return re.sub(r"[^\w.-]+", "_", last).strip("._") or "model"

