"""``modelviz export-onnx``: a checked, numerically verified ONNX file, ready for Netron."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path
from typing import Annotated

import typer

from modelviz.cli._console import note, print_out, spinner
from modelviz.cli._options import ModelOptions, model_command
from modelviz.cli.netron import HostOpt, PortOpt, serve_until_stopped
from modelviz.errors import CheckFailed


@model_command
def export_onnx(
    opts: ModelOptions,
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
) -> None:
    """Export to ONNX, run onnx.checker, and compare ONNX Runtime's output with torch's.

    Example: modelviz export-onnx resnet18 -o resnet18.onnx --open
    """
    import json

    from modelviz.core.specs import check_tolerance
    from modelviz.features.onnx import export as onnx_export
    from modelviz.features.onnx.view import render_export

    if output is not None:
        onnx_export.check_output(output)
    check_tolerance(atol)
    prepared = opts.load(quiet=as_json)
    target = output or Path(_file_name(prepared.loaded.name) + ".onnx")

    def stage(message: str) -> AbstractContextManager[None]:
        return spinner(message, quiet=as_json)

    result = onnx_export.export(prepared, target, exporter=exporter, opset=opset,
                                dynamic_batch=not static, verify=verify, atol=atol,
                                external_data=True if external_data else None,
                                train=opts.train, stage=stage)
    for message in result.notes:
        note(message)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_out(render_export(result))
    if not result.ok:
        worst = max(result.parity or [], key=lambda p: p.max_abs_error, default=None)
        problem = "; ".join(result.problems) or (
            f"ONNX Runtime differs from torch by {worst.max_abs_error:.3g} on {worst.output}, "
            f"beyond --atol {result.atol:g}" if worst else "verification failed")
        raise CheckFailed(f"{target} was written, but {problem}.",
                          "Look for float16 or nondeterministic ops, or raise --atol if the "
                          "difference is acceptable.")
    if open_netron:
        serve_until_stopped(target, host=host, port=port, browse=True)


def _file_name(model_name: str) -> str:
    """A file name from MODEL: "sample_models.seeds:Net" and "pkg.mod.Net" -> "Net",
    "runs/best.pt" -> "best", "resnet18" -> "resnet18"."""
    import re

    last = re.split(r"[:/\\]", model_name.strip())[-1]
    stem, dot, suffix = last.rpartition(".")
    if dot:
        last = stem if suffix.lower() in SAVED_SUFFIXES else suffix
    return re.sub(r"[^\w.-]+", "_", last).strip("._") or "model"


SAVED_SUFFIXES = ("py", "pt", "pth", "pt2", "ts", "jit", "bin", "safetensors")
