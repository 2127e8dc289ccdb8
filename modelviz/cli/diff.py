"""``modelviz diff A B [SIZES]``: what a change did to a model, for review and for CI."""

from __future__ import annotations

import dataclasses
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelviz.cli._console import emit, note, print_out, spinner
from modelviz.cli._options import (
    BatchOpt,
    DeviceOpt,
    DtypeOpt,
    ForwardArgOpt,
    InputFileOpt,
    KwargOpt,
    ModelOptions,
    SeedOpt,
    StrictOpt,
    TrainOpt,
    TrustPickleOpt,
    WeightsOpt,
)
from modelviz.cli.memory import Optimizer
from modelviz.errors import CheckFailed, SpecError

if TYPE_CHECKING:
    from modelviz.core.session import Prepared
    from modelviz.features.diff.compare import ModelDiff


class DiffFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"


EXTENSIONS = {".txt": DiffFormat.table, ".md": DiffFormat.markdown,
              ".markdown": DiffFormat.markdown, ".json": DiffFormat.json}


def _prepare(spec: str, sizes: list[str] | None, opts: ModelOptions) -> Prepared:
    """Summaries and memory plans need shapes and counts alone: placeholder weights do."""
    return dataclasses.replace(opts, model=spec, sizes=sizes).prepare(values=False)


def _model_side(spec: str, sizes: list[str] | None, opts: ModelOptions, *, summary: bool,
                memory: str | None, quiet: bool) -> tuple[dict[str, Any] | None,
                                                          dict[str, Any] | None]:
    """A MODEL spec, summarised and/or memory-planned (with optimizer ``memory``) now, in the
    JSON form the files hold, so a model and a file compare alike."""
    from modelviz.core.session import run, shapes_only

    with spinner(f"Loading {spec}", quiet=quiet):
        prepared = _prepare(spec, sizes, opts)
    summarised = planned = None
    if summary:
        from modelviz.features.summary.summary import summarize

        with spinner(f"Summarising {spec}", quiet=quiet):
            summarised = shapes_only(prepared, lambda p: summarize(
                p, run(p, train=opts.train)).to_dict())
    if memory is not None:
        from modelviz.features.memory.plan import plan

        with spinner(f"Planning the memory of {spec}", quiet=quiet):
            planned = shapes_only(prepared, lambda p: plan(p, optimizer=memory).to_dict())
    return summarised, planned


def _compare(a: str, b: str, sizes: list[str] | None, opts: ModelOptions, *,
             memory: bool, optimizer: str, quiet: bool) -> ModelDiff:
    """Files are read and their kind told by their schema; a MODEL spec is summarised (and
    planned with ``memory``), or planned to meet a memory file."""
    from modelviz.features.diff import files
    from modelviz.features.diff.compare import compare
    from modelviz.features.diff.memory import add_peaks

    read = {spec: files.read_side(spec) for spec in (a, b) if spec.endswith(".json")}
    kinds = {kind for kind, _ in read.values()}
    if len(read) == 2:
        files.same_kind(a, read[a][0], b, read[b][0])
        if sizes:
            note("SIZES are ignored: both sides are files")
    kind = kinds.pop() if kinds else "summary"
    if memory and kind != "memory" and read:
        raise SpecError(f"--memory plans models, and {next(iter(read))} is a modelviz {kind}.",
                        "Give two models, or two files written by `modelviz memory MODEL -o "
                        "FILE.json`.")
    if kind == "profile" and len(read) == 1:
        model = b if a in read else a
        raise SpecError(f"{next(iter(read))} is a profile, and {model} a model: profiles are "
                        "compared as two files.",
                        "Write the other with `modelviz profile MODEL --format json -o "
                        "FILE.json`.")
    sides: dict[str, dict[str, Any]] = {spec: data for spec, (_, data) in read.items()}
    plans: dict[str, dict[str, Any]] = {}
    for spec in (a, b):
        if spec in read:
            continue
        summarised, planned = _model_side(
            spec, sizes, opts, summary=kind == "summary",
            memory=optimizer if memory or kind == "memory" else None, quiet=quiet)
        sides[spec] = summarised if summarised is not None else planned or {}
        if planned is not None:
            plans[spec] = planned
    if kind != "summary":
        return files.compare_sides(kind, sides[a], sides[b], a_label=a, b_label=b)
    result = compare(sides[a], sides[b], a_label=a, b_label=b)
    return add_peaks(result, plans[a], plans[b]) if memory else result


def _render(diff: ModelDiff, fmt: DiffFormat) -> str | None:
    if fmt is DiffFormat.json:
        import json

        return json.dumps(diff.to_dict(), indent=2) + "\n"
    if fmt is DiffFormat.markdown:
        from modelviz.features.diff.view import render_diff_markdown

        return render_diff_markdown(diff)
    return None


def diff(
    a: Annotated[str, typer.Argument(
        help="Before: a summary, memory or profile JSON written by modelviz, or a MODEL spec.",
        show_default=False)],
    b: Annotated[str, typer.Argument(
        help="After: a summary, memory or profile JSON written by modelviz, or a MODEL spec.",
        show_default=False)],
    sizes: Annotated[list[str] | None, typer.Argument(
        help="Input sizes for the sides given as MODEL specs (see `modelviz summary`).",
        show_default=False)] = None,
    fmt: Annotated[DiffFormat | None, typer.Option(
        "--format", "-f", help="Output format; default: from -o's extension, else table.",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to FILE (.txt, .md, .json) instead of stdout.")] = None,
    fail_on_increase: Annotated[float | None, typer.Option(
        "--fail-on-increase", metavar="PCT", min=0,
        help="Exit with status 1 if params, FLOPs, estimated memory, a memory peak or the "
             "forward time grow by more than PCT %.")
    ] = None,
    memory: Annotated[bool, typer.Option(
        "--memory", help="Plan both models' memory (see `modelviz memory`) and compare the "
                         "peaks too.")] = False,
    optimizer: Annotated[Optimizer, typer.Option(
        "--optimizer", help="With --memory, or a memory file against a model: the optimizer "
                            "of the planned training step.")] = Optimizer.adam,
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
    """Compare two models, or two summary, memory or profile files: totals and layer changes.

    Example: modelviz diff main/summary.json sample_models.seeds:Net 1x28x28
    """
    opts = ModelOptions.from_locals(locals())
    from modelviz.output import format_from_suffix

    chosen = fmt or format_from_suffix(output, EXTENSIONS, DiffFormat.table,
                                       listed=".txt, .md or .json")
    quiet = chosen is DiffFormat.json and output is None
    result = _compare(a, b, sizes, opts, memory=memory, optimizer=optimizer.value, quiet=quiet)
    text = _render(result, chosen)
    if text is None:
        from modelviz.features.diff.view import render_diff_table
        from modelviz.features.summary.table import plain_text

        renderable = render_diff_table(result)
        if output is None:
            print_out(renderable)
        else:
            text = plain_text(renderable)
    if text is not None:
        emit(text, output)
    if fail_on_increase is not None:
        grown = result.increases_over(fail_on_increase)
        if grown:
            parts = [f"{c.label} grew {'from 0' if c.percent is None else f'{c.percent:.2f}%'}"
                     for c in grown]
            raise CheckFailed(f"{'; '.join(parts)}, more than the {fail_on_increase:g}% allowed.",
                              "Check the change, or raise --fail-on-increase.")
