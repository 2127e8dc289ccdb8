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
from modelviz.errors import CheckFailed

if TYPE_CHECKING:
    from modelviz.features.diff.compare import ModelDiff


class DiffFormat(str, Enum):
    table = "table"
    markdown = "markdown"
    json = "json"


EXTENSIONS = {".txt": DiffFormat.table, ".md": DiffFormat.markdown,
              ".markdown": DiffFormat.markdown, ".json": DiffFormat.json}


def _side(spec: str, sizes: list[str] | None, opts: ModelOptions, quiet: bool) -> dict[str, Any]:
    """A summary.json as written, or a MODEL spec summarised now, in the same JSON form."""
    if spec.endswith(".json"):
        from modelviz.features.diff.compare import read_summary

        return read_summary(spec)
    from modelviz.core.session import run
    from modelviz.features.summary.summary import summarize

    with spinner(f"Summarising {spec}", quiet=quiet):
        prepared = dataclasses.replace(opts, model=spec, sizes=sizes).prepare()
        return summarize(prepared, run(prepared, train=opts.train)).to_dict()


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
        help="Before: a summary.json written by modelviz, or any MODEL spec.",
        show_default=False)],
    b: Annotated[str, typer.Argument(
        help="After: a summary.json written by modelviz, or any MODEL spec.",
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
        help="Exit with status 1 if params, FLOPs or estimated memory grow by more than PCT %.")
    ] = None,
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
    """Compare two models or two summary.json files: totals, and layers added, removed or changed.

    Example: modelviz diff main/summary.json sample_models.seeds:Net 1x28x28
    """
    opts = ModelOptions.from_locals(locals())
    from modelviz.features.diff.compare import compare
    from modelviz.output import format_from_suffix

    chosen = fmt or format_from_suffix(output, EXTENSIONS, DiffFormat.table,
                                       listed=".txt, .md or .json")
    quiet = chosen is DiffFormat.json and output is None
    if sizes and a.endswith(".json") and b.endswith(".json"):
        note("SIZES are ignored: both sides are summary files")
    result = compare(_side(a, sizes, opts, quiet), _side(b, sizes, opts, quiet),
                     a_label=a, b_label=b)
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
