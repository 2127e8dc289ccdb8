"""``modelviz summary``: the layer table, with exact FLOPs and torchsummary's memory figures."""

from __future__ import annotations

import os
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelviz.cli._console import emit, spinner
from modelviz.cli._options import (
    BatchOpt,
    DeviceOpt,
    DtypeOpt,
    FoldOpt,
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
from modelviz.errors import CheckFailed, SpecError
from modelviz.features.summary.options import (
    ALL_COLUMNS,
    DEFAULT_DEPTH,
    SummaryColumns,
    TableOptions,
)

if TYPE_CHECKING:
    from rich.console import Group

    from modelviz.core.session import Prepared

#: The width of a table in a pipe or a file: its natural width, but no more than 160 columns.
#: A log, a CI page or ``| less -S`` keeps whole names up to twice a classic terminal's width,
#: which most models' tables fit in (vit_b_16, Llama-7B with every column); past that, names
#: give way as on a terminal, so a model whose outputs are dicts of shapes does not print
#: 700-column lines. Numbers and shapes are never cut: a table that needs more gets more.
PIPE_WIDTH = 160
#: Model sources built with random weights, where ``--weights`` gives them trained ones.
RANDOM_SOURCES = ("torchvision", "transformers", "timm")


class SummaryFormat(str, Enum):
    table = "table"
    classic = "classic"
    markdown = "markdown"
    json = "json"
    csv = "csv"


EXTENSIONS = {".txt": SummaryFormat.table, ".md": SummaryFormat.markdown,
              ".markdown": SummaryFormat.markdown, ".json": SummaryFormat.json,
              ".csv": SummaryFormat.csv}


def parse_columns(values: list[str] | None) -> tuple[SummaryColumns, ...]:
    names = [v.strip() for value in values or [] for v in value.split(",") if v.strip()]
    known = {c.value: c for c in SummaryColumns}
    bad = [n for n in names if n != "all" and n.replace("-", "_") not in known]
    if bad:
        raise SpecError(f"unknown column {bad[0]!r}.",
                        f"Use any of: {', '.join(known)}, or all.")
    if "all" in names:
        return ALL_COLUMNS
    return tuple(known[n.replace("-", "_")] for n in names)


def choose_format(fmt: SummaryFormat | None, output: Path | None) -> SummaryFormat:
    from modelviz.output import format_from_suffix

    return fmt or format_from_suffix(output, EXTENSIONS, SummaryFormat.table,
                                     listed=".txt, .md, .json or .csv")


def _over(what: str, value: int, budget: int) -> str:
    from modelviz.core.formatting import human

    return (f"{what} {human(value)} ({value:,}) exceed the budget of {human(budget)} "
            f"by {human(value - budget)} ({value / budget:.2f}x)")


def _print_table(renderable: Group) -> None:
    """The table on stdout: as wide as the terminal (``COLUMNS`` counts as one), in a pipe its
    natural width up to ``PIPE_WIDTH``; wider only where its numbers and shapes need it."""
    from modelviz.cli._console import console, out_console
    from modelviz.features.summary.table import UNBOUNDED, least_width

    out = out_console()
    least = least_width(renderable, out)
    if out.is_terminal or os.environ.get("COLUMNS"):
        width = max(out.width, least)
    else:
        natural = out.measure(renderable, options=out.options.update_width(UNBOUNDED)).maximum
        width = max(min(natural, PIPE_WIDTH), least)
    if width != out.width:
        out = console(width=width)
    out.print(renderable, crop=False)


def _tell_random_weights(prepared: Prepared) -> None:
    """Once, on a terminal: a zoo or hub model here has random weights, which users of
    torchvision's pretrained models do not expect; the loader's own note may say so already
    (hf:), and a pipe or a script gets no extra line."""
    from modelviz.cli._console import err_console, note, out_console

    loaded = prepared.loaded
    if (loaded.source not in RANDOM_SOURCES or loaded.weights is not None
            or not (out_console().is_terminal and err_console().is_terminal)
            or any("random weights" in message for message in loaded.notes)):
        return
    note(f"{loaded.name} has random weights (none are downloaded); its shapes, parameter "
         "counts and FLOPs are those of the trained model. --weights FILE loads a state dict.")


def summary(
    model: ModelArg,
    sizes: SizesArg = None,
    depth: Annotated[int | None, typer.Option(
        "--depth", "-d", min=1, show_default=False,
        help=f"Show modules down to this depth (default {DEFAULT_DEPTH}, or deeper to reach "
             "the first repeated blocks, as CLIP's encoder layers at 4).")] = None,
    columns: Annotated[list[str] | None, typer.Option(
        "--columns", "-c", metavar="NAMES",
        help="Extra columns, comma-separated: input_shape, kernel_size, params_percent, "
             "trainable, flops, macs, output_memory, or all.")] = None,
    fold: FoldOpt = True,
    fmt: Annotated[SummaryFormat | None, typer.Option(
        "--format", "-f", help="Output format; default: from -o's extension, else table.",
        show_default=False)] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to FILE (.txt, .md, .json, .csv) instead of stdout.")
    ] = None,
    max_params: Annotated[str | None, typer.Option(
        "--max-params", metavar="COUNT", help="Exit with status 1 above this many parameters "
        "(25M, 1.5G).")] = None,
    max_flops: Annotated[str | None, typer.Option(
        "--max-flops", metavar="COUNT", help="Exit with status 1 above this many FLOPs (5G).")
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
    """Layer table: output shapes, parameters, FLOPs and memory, like torchsummary and torchinfo.

    Example: modelviz summary vgg16 3x224x224
    """
    opts = ModelOptions.from_locals(locals())
    from modelviz.core.specs import parse_budget

    chosen = choose_format(fmt, output)
    extra = parse_columns(columns)
    params_budget = parse_budget(max_params, what="--max-params") if max_params else None
    flops_budget = parse_budget(max_flops, what="--max-flops") if max_flops else None
    quiet = chosen in (SummaryFormat.json, SummaryFormat.csv) and output is None

    from modelviz.core.session import run, shapes_only
    from modelviz.features.summary.summary import summarize

    prepared = opts.load(quiet=quiet, values=False)
    with spinner("Running the forward pass", quiet=quiet):
        result = shapes_only(prepared, lambda p: summarize(p, run(p, train=opts.train)))

    table = TableOptions(depth=depth or DEFAULT_DEPTH, fold=fold, columns=extra,
                         reach_blocks=depth is None)
    text: str | None = None
    if chosen is SummaryFormat.table:
        from modelviz.features.summary.table import plain_text, render_table

        renderable = render_table(result, table)
        if output is None:
            _print_table(renderable)
        else:
            text = plain_text(renderable)
    elif chosen is SummaryFormat.classic:
        from modelviz.features.summary.classic import render_classic

        text = render_classic(result)
    elif chosen is SummaryFormat.markdown:
        from modelviz.features.summary.markdown import render_markdown

        text = render_markdown(result, table)
    elif chosen is SummaryFormat.json:
        from modelviz.features.summary.data import render_json

        text = render_json(result)
    else:
        from modelviz.features.summary.data import render_csv

        text = render_csv(result)
    if text is not None:
        emit(text, output)
    if not quiet and chosen is not SummaryFormat.json:
        _tell_random_weights(prepared)

    problems = []
    if params_budget is not None and result.totals.params > params_budget:
        problems.append(_over("params", result.totals.params, params_budget))
    if flops_budget is not None and result.totals.flops > flops_budget:
        problems.append(_over("FLOPs", result.totals.flops, flops_budget))
    if problems:
        raise CheckFailed("; ".join(problems) + ".",
                          "Shrink the model or raise the budget.")
