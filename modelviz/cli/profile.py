"""``modelviz profile``: where the forward pass spends its time, per module, with a roofline."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from modelviz.cli._console import emit, flags, note, print_out, spinner
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
from modelviz.errors import SpecError


class ProfileFormat(str, Enum):
    table = "table"
    json = "json"
    markdown = "markdown"
    csv = "csv"


class ProfileSort(str, Enum):
    time = "time"
    flops = "flops"
    name = "name"


EXTENSIONS = {".txt": ProfileFormat.table, ".md": ProfileFormat.markdown,
              ".markdown": ProfileFormat.markdown, ".json": ProfileFormat.json,
              ".csv": ProfileFormat.csv}


def profile(
    model: ModelArg,
    sizes: SizesArg = None,
    runs: Annotated[int | None, typer.Option(
        "--runs", "-n", min=1, show_default=False,
        help="Timed runs (the median is shown), after warm-up; default: as many as fit in "
             "about 1.5 s, 5 to 100.")] = None,
    warmup: Annotated[int, typer.Option(
        "--warmup", min=0, help="Untimed runs first (allocator, caches, cuDNN's choices).")] = 2,
    backward: Annotated[bool, typer.Option(
        "--backward", help="Also time the backward pass (as a whole).")] = False,
    depth: Annotated[int, typer.Option(
        "--depth", "-d", min=1, help="Show modules down to this depth.")] = 3,
    time_depth: Annotated[int | None, typer.Option(
        "--time-depth", min=1, show_default=False,
        help="Time only modules down to this depth (default: all). Fewer hooks cost less where "
             "the forward is launch-bound, as on a GPU at batch 1.")] = None,
    sort: Annotated[ProfileSort, typer.Option(
        "--sort", help="Order of siblings: total time, FLOPs, or name (the order they ran).")
    ] = ProfileSort.time,
    fmt: Annotated[ProfileFormat | None, typer.Option(
        "--format", "-f", help="Output format; default: from -o's extension, else table.",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to FILE (.txt, .md, .json, .csv) instead of stdout.")
    ] = None,
    trace: Annotated[Path | None, typer.Option(
        "--trace", metavar="FILE.json",
        help="Write a Chrome/Perfetto trace whose spans are the module calls.")] = None,
    trace_kernels: Annotated[bool, typer.Option(
        "--trace-kernels", help="In --trace, torch.profiler's ops and kernels nested inside "
        "the module spans (one more forward, under the profiler).")] = False,
    compile_model: Annotated[bool, typer.Option(
        "--compile", help="Profile torch.compile(model), naming the modules it fused away.")
    ] = False,
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
    """Time per module (median of runs) beside its FLOPs and bytes: what is slow, and why.

    Example: modelviz profile resnet50 --depth 2
    """
    opts = ModelOptions.from_locals(locals())
    from modelviz.output import format_from_suffix

    chosen = fmt or format_from_suffix(output, EXTENSIONS, ProfileFormat.table,
                                       listed=".txt, .md, .json or .csv")
    if trace_kernels and trace is None:
        raise SpecError("--trace-kernels adds kernels to the --trace file, and none is given.",
                        "Add --trace FILE.json.")
    quiet = chosen in (ProfileFormat.json, ProfileFormat.csv) and output is None

    from modelviz.features.profile.measure import profile_model

    prepared = opts.load(quiet=quiet)
    what = "Compiling and timing" if compile_model else "Timing"
    with spinner(f"{what} the forward pass", quiet=quiet):
        result = profile_model(prepared, runs=runs, warmup=warmup, backward=backward,
                               compile=compile_model, train=opts.train, time_depth=time_depth)
    result.notes[:] = [flags(n) for n in result.notes]  # in every format, in the CLI's words
    if trace is not None:
        from modelviz.features.profile import trace as traces

        with spinner("Writing the trace", quiet=quiet):
            written = (traces.write_kernel_trace(result, prepared, trace, train=opts.train)
                       if trace_kernels else traces.write_trace(result, trace))
        note(f"wrote {written}")

    from modelviz.features.profile import view

    text: str | None = None
    if chosen is ProfileFormat.table:
        renderable = view.render_table(result, depth=depth, sort=sort.value)
        if output is None:
            print_out(renderable)
        else:
            from modelviz.features.summary.table import plain_text

            text = plain_text(renderable)
    elif chosen is ProfileFormat.markdown:
        text = view.render_markdown(result, depth=depth, sort=sort.value)
    elif chosen is ProfileFormat.json:
        text = view.render_json(result)
    else:
        text = view.render_csv(result, sort=sort.value)
    if text is not None:
        emit(text, output)
