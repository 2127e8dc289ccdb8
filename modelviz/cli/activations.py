"""``modelviz activations``: what chosen layers output, as statistics and as pictures."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelviz.cli._console import note, print_out, spinner
from modelviz.cli._options import ModelOptions, model_command, tell_loaded
from modelviz.errors import SpecError

if TYPE_CHECKING:
    from rich.console import RenderableType

    from modelviz.features.activations.stats import ActivationReport, LayerStats

IMAGE_PANEL = "Image input"
DEFAULT_FOLDER = Path("activations")


def _num(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def _names(layers: list[str], limit: int = 5) -> str:
    shown = ", ".join(layers[:limit])
    return shown + (f" and {len(layers) - limit} more" if len(layers) > limit else "")


def _image_cell(layer: LayerStats) -> str:
    """✓ for ``<folder>/<layer name>.png``; the file name where the layer's name had to change
    to be one (``pool#2`` is ``pool_2.png``). Full paths are in --json."""
    if layer.image is None:
        return "–"
    return "✓" if layer.image.name == f"{layer.name}.png" else layer.image.name


def render_report(report: ActivationReport) -> RenderableType:
    """The Rich table: one row per measured output; dead rows yellow, non-finite rows red."""
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    from modelviz.core.formatting import inputs_label
    from modelviz.escape import printable
    from modelviz.features.activations.stats import DEAD_THRESHOLD

    title = printable(f"{report.model} · {inputs_label(report.inputs)} · {report.device}")
    table = Table(title=title, title_justify="left", header_style="bold")
    # Numbers never shrink; on a narrow terminal the name and shape columns wrap instead.
    table.add_column("Layer (type)", overflow="fold")
    table.add_column("Shape")
    for header in ("Mean", "Std", "Min", "Max", "Zeros %", "NaN", "Inf"):
        table.add_column(header, justify="right", no_wrap=True)
    table.add_column("Image", no_wrap=True)
    for layer in report.layers:
        s = layer.stats
        label = Text(printable(layer.name))
        label.append(f" ({printable(layer.type)})", style="dim")
        style = "bold red" if layer.nonfinite else "yellow" if layer.dead else ""
        table.add_row(label, "[" + ", ".join(map(str, layer.shape)) + "]", _num(s.mean),
                      _num(s.std), _num(s.min), _num(s.max), f"{s.zero_fraction * 100:.1f}",
                      f"{s.nan_count:,}", f"{s.inf_count:,}",
                      printable(_image_cell(layer)), style=style)
    modules = len({layer.module for layer in report.layers})
    parts = [f"{len(report.layers)} output(s) of {modules} module(s)"]
    dead = [layer.name for layer in report.dead]
    parts.append(f"{len(dead)} dead (≥{DEAD_THRESHOLD:.0%} zeros)"
                 + (f": {_names(dead)}" if dead else ""))
    bad = [layer.name for layer in report.nonfinite]
    parts.append(f"{len(bad)} with NaN or Inf" + (f": {_names(bad)}" if bad else ""))
    images = [layer.image for layer in report.layers if layer.image is not None]
    if images:
        parts.append(f"{len(images)} image(s): {images[0].parent}/<layer>.png")
    style = "bold red" if bad else "yellow" if dead else ""
    return Group(table, Text(printable(" · ".join(parts)), style=style))


@model_command
def activations(
    opts: ModelOptions,
    layer: Annotated[list[str] | None, typer.Option(
        "--layer", "-l", metavar="NAME",
        help="Module to look at: a qualified name (layer1.0.conv1) or a glob ('layer4.*'; "
             "'*' for every module); repeatable.")] = None,
    module_type: Annotated[list[str] | None, typer.Option(
        "--type", "-t", metavar="TYPE",
        help="Every module of this type (Conv2d, Linear, ReLU...); repeatable.")] = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", metavar="DIR",
        help="Folder for one PNG per layer, <layer>.png; with --layer or --type, "
             "activations/ by default.", show_default=False)] = None,
    max_channels: Annotated[int, typer.Option(
        "--max-channels", min=1, help="Most channel maps drawn per layer (those with the "
        "highest mean activation).")] = 64,
    no_images: Annotated[bool, typer.Option(
        "--no-images", help="Statistics only: draw nothing and keep no activations.")] = False,
    hist: Annotated[bool, typer.Option(
        "--hist", help="Add a histogram of each layer's values below its maps.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the statistics as JSON instead of the table.")] = False,
    image: Annotated[Path | None, typer.Option(
        "--image", rich_help_panel=IMAGE_PANEL,
        help="A real image as the input (replaces SIZES), preprocessed with the torchvision "
             "weights' transforms or --resize, --mean and --std.")] = None,
    resize: Annotated[str | None, typer.Option(
        "--resize", rich_help_panel=IMAGE_PANEL, metavar="SIZE",
        help="224: shorter side to 224, then the centre 224x224; 224x160: exactly HxW.")
    ] = None,
    mean: Annotated[str | None, typer.Option(
        "--mean", rich_help_panel=IMAGE_PANEL, metavar="VALUES",
        help="Per-channel mean subtracted from pixels in [0, 1]: 0.485,0.456,0.406.")] = None,
    std: Annotated[str | None, typer.Option(
        "--std", rich_help_panel=IMAGE_PANEL, metavar="VALUES",
        help="Per-channel std the pixels are divided by: 0.229,0.224,0.225.")] = None,
) -> None:
    """Feature maps and activation statistics of chosen layers, on noise, saved inputs or an image.

    Example: modelviz activations resnet18 --layer layer1 --image photo.jpg -o acts/
    """
    import json

    from modelviz.core.image_input import parse_floats, parse_resize
    from modelviz.core.session import prepare_image
    from modelviz.features.activations.measure import measure_activations
    from modelviz.features.activations.pictures import check_folder, write_images

    layers = layer or []
    types = module_type or []
    if image is None and (resize or mean or std):
        flag = "--resize" if resize else "--mean" if mean else "--std"
        raise SpecError(f"{flag} applies to --image only.", f"Add --image, or drop {flag}.")
    resize_value = parse_resize(resize)
    means = parse_floats(mean, "--mean")
    stds = parse_floats(std, "--std")
    if hist and no_images:
        raise SpecError("--hist draws into the layer images, and --no-images draws none.",
                        "Drop one of them.")
    draw = not no_images and (output is not None or bool(layers) or bool(types))
    folder = output if output is not None else DEFAULT_FOLDER
    if draw:
        check_folder(folder)

    with spinner(f"Loading {opts.model}", quiet=as_json):
        picture = None
        if image is not None:
            prepared, picture = prepare_image(
                opts.model.strip(), image, *(opts.sizes or []), resize=resize_value, mean=means,
                std=stds, device=opts.device, dtype=opts.dtype, batch_size=opts.batch_size,
                kwargs=_kwargs(opts), weights=opts.weights, strict=opts.strict,
                trust_pickle=opts.trust_pickle, input_file=opts.input_file, seed=opts.seed)
        else:
            prepared = opts.prepare()
    tell_loaded(prepared)
    if picture is not None:
        note(f"input: {picture.path} as {'x'.join(map(str, picture.shape))} ({picture.how})")
    with spinner("Running the forward pass", quiet=as_json):
        result = measure_activations(prepared, layers=layers, types=types, images=draw,
                                         max_channels=max_channels, hist=hist,
                                         train=opts.train, picture=picture)
    for message in result.notes:
        note(message)
    if draw:
        count = sum(1 for item in result.layers if item.capture is not None)
        with spinner(f"Drawing {count} image(s)", quiet=as_json):
            written = write_images(result, folder, hist=hist)
        if written:
            note(f"wrote {len(written)} image(s) to {folder}/")
    elif not layers and not types and not no_images:
        note("statistics of every module; choose layers with --layer or --type to draw them")
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        print_out(render_report(result))


def _kwargs(opts: ModelOptions) -> dict[str, object]:
    from modelviz.core.specs import parse_kwargs

    return parse_kwargs(opts.kwarg)
