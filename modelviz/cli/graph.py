"""``modelviz graph``: the module data-flow graph or the autograd graph, as PNG, SVG, PDF or DOT."""

from __future__ import annotations

import sys
from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from modelviz.cli._console import note, spinner
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
from modelviz.errors import OutputError, SpecError


class GraphView(str, Enum):
    modules = "modules"
    autograd = "autograd"


class RankDir(str, Enum):
    TB = "TB"
    LR = "LR"


class GraphFormat(str, Enum):
    png = "png"
    svg = "svg"
    pdf = "pdf"
    dot = "dot"
    html = "html"


def _check_view_options(view: GraphView, depth: int | None, expand: list[str], fold: bool,
                        show_saved: bool, show_attrs: bool) -> None:
    if view is GraphView.autograd:
        given = [flag for flag, used in (("--depth", depth is not None), ("--expand", expand),
                                         ("--no-fold", not fold)) if used]
        if given:
            raise SpecError(f"{given[0]} applies to --view modules, not to --view autograd.",
                            f"Drop {given[0]}, or draw --view modules.")
    else:
        given = [flag for flag, used in (("--show-saved", show_saved),
                                         ("--show-attrs", show_attrs)) if used]
        if given:
            raise SpecError(f"{given[0]} applies to --view autograd, not to --view modules.",
                            f"Drop {given[0]}, or draw --view autograd.")


def graph(
    model: ModelArg,
    sizes: SizesArg = None,
    view: Annotated[GraphView, typer.Option(
        "--view", help="modules: data flow between modules, with shapes; autograd: the "
        "backward graph (torchviz).")] = GraphView.modules,
    depth: Annotated[int | None, typer.Option(
        "--depth", "-d", min=1, show_default=False,
        help="Draw modules down to this depth; deeper ones fold into their parent. Default: "
             "2, or deeper to reach the first repeated blocks, with busy modules drawn closed "
             "(a note says which).")] = None,
    expand: Annotated[list[str] | None, typer.Option(
        "--expand", "-e", metavar="NAME",
        help="Open this module one level deeper than the rest (repeatable).")] = None,
    fold: Annotated[bool, typer.Option(
        "--fold/--no-fold", help="Fold runs of 3 or more identical numbered blocks into one "
        "node (×N).")] = True,
    rankdir: Annotated[RankDir, typer.Option(
        "--rankdir", case_sensitive=False, help="TB: top to bottom; LR: left to right.")
    ] = RankDir.TB,
    show_saved: Annotated[bool, typer.Option(
        "--show-saved", help="Autograd view: show the tensors saved for backward.")] = False,
    show_attrs: Annotated[bool, typer.Option(
        "--show-attrs", help="Autograd view: show the attributes of backward nodes.")] = False,
    fmt: Annotated[GraphFormat | None, typer.Option(
        "--format", "-f", show_default=False,
        help="png, svg, pdf (these need Graphviz), dot, or html (an interactive viewer that "
             "needs no Graphviz); default: from -o's extension, else dot.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Write to FILE (.png, .svg, .pdf, .dot, .gv, .html); without it "
        "the graph goes to stdout.")] = None,
    wrap: Annotated[bool, typer.Option(
        "--wrap/--no-wrap", help="Wrap a long --rankdir LR graph into rows.")] = True,
    profile: Annotated[Path | None, typer.Option(
        "--profile", metavar="FILE.json", show_default=False,
        help="HTML viewer: time per module from this `modelviz profile --format json -o` "
             "file, in the side panel and as a colour.")] = None,
    memory: Annotated[Path | None, typer.Option(
        "--memory", metavar="FILE.json", show_default=False,
        help="HTML viewer: memory per module from this `modelviz memory -o` file (its "
             "--depth decides which modules have figures).")] = None,
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
    """Draw the model as a graph: modules with shapes and residual merges, or autograd's.

    Example: modelviz graph resnet18 -o resnet18.svg
    """
    opts = ModelOptions.from_locals(locals())
    from modelviz.features.graph.drawing import find_dot, format_for
    from modelviz.output import write_bytes

    expanded = expand or []
    _check_view_options(view, depth, expanded, fold, show_saved, show_attrs)
    if _wants_html(fmt, output):
        _write_html(opts, view, depth, expanded, fold, rankdir, output, profile, memory)
        return
    for flag, given in (("--profile", profile), ("--memory", memory)):
        if given is not None:
            raise SpecError(f"{flag} applies to the HTML viewer only.",
                            f"Write -o model.html, or drop {flag}.")
    chosen = format_for(fmt.value if fmt is not None else None, output)
    if chosen != "dot":
        find_dot(fmt=chosen)  # before the model is loaded: no wait for a missing program
    if output is None and chosen in ("png", "pdf") and sys.stdout.isatty():
        raise OutputError(f"{chosen.upper()} is binary and stdout is a terminal.",
                          f"Give -o model.{chosen}, or redirect stdout to a file.")

    from modelviz.core.session import shapes_only
    from modelviz.features.graph.draw import draw

    prepared = opts.load(values=False)
    with spinner("Running the forward pass"):
        drawing = shapes_only(prepared, lambda p: draw(
            p, view=view.value, depth=depth, expand=tuple(expanded), fold=fold,
            rankdir=rankdir.value, show_saved=show_saved, show_attrs=show_attrs,
            train=opts.train, wrap=wrap))
    with spinner("Laying out the graph with Graphviz"):
        rendered = drawing.render(chosen)
    if output is None:
        typer.echo(rendered.data if chosen in ("png", "pdf") else rendered.data.decode(),
                   nl=False)
    else:
        write_bytes(output, rendered.data)
        size = f"{len(drawing.graph.nodes)} nodes, " if drawing.graph is not None else ""
        note(f"wrote {output} ({size}{len(rendered.data):,} bytes)")
    for warning in rendered.warnings:
        note(warning)


def _wants_html(fmt: GraphFormat | None, output: Path | None) -> bool:
    if fmt is not None:
        return fmt is GraphFormat.html
    return output is not None and output.suffix.lower() in (".html", ".htm")


def _write_html(opts: ModelOptions, view: GraphView, depth: int | None, expand: list[str],
                fold: bool, rankdir: RankDir, output: Path | None, profile: Path | None,
                memory: Path | None) -> None:
    """The interactive viewer: every module can be opened in the page, so the page starts
    with the top-level modules and takes ``--expand`` as the modules opened on load."""
    if view is not GraphView.modules:
        raise SpecError("the HTML viewer draws --view modules only.",
                        "Drop --view autograd, or write .svg or .dot for the autograd graph.")
    if depth is not None:
        raise SpecError("--depth does not apply to the HTML viewer: it opens modules on click.",
                        "Drop --depth; give --expand NAME to open a module on load.")
    if output is None and sys.stdout.isatty():
        raise OutputError("the HTML viewer is a page of over 1 MB and stdout is a terminal.",
                          "Give -o model.html, or redirect stdout to a file.")
    from modelviz.core.session import shapes_only
    from modelviz.features.graph import overlay
    from modelviz.features.graph.interactive import viewer
    from modelviz.output import write_text

    # the files first: a wrong one is one line before any model is built
    timed = (overlay.load(profile, "profile"), profile) if profile is not None else None
    planned = (overlay.load(memory, "memory"), memory) if memory is not None else None
    prepared = opts.load(values=False)
    with spinner("Running the forward pass"):
        made = shapes_only(prepared, lambda p: viewer(
            p, rankdir=rankdir.value, train=opts.train, expand=tuple(expand), fold=fold,
            profile=timed, memory=planned))
    if output is None:
        typer.echo(made.page, nl=False)
    else:
        write_text(output, made.page)
        note(f"wrote {output} ({len(made.page.encode()):,} bytes); open it in a browser")
    for line in made.notes:
        note(line)
