"""``modelviz activations``: what chosen layers output, as statistics and as pictures."""

from __future__ import annotations

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
    tell_loaded,
)
from modelviz.errors import SpecError

IMAGE_PANEL = "Image input"
DEFAULT_FOLDER = Path("activations")


def activations(
    model: ModelArg,
    sizes: SizesArg = None,
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
    channel_dim: Annotated[int | None, typer.Option(
        "--channel-dim", metavar="DIM",
        help="Dimension of 4-D outputs that holds the channels: 1 (NCHW), -1 (NHWC). By "
             "default 1, or the last where the layer's LayerNorm or Linear says so.",
        show_default=False)] = None,
    shared_scale: Annotated[bool, typer.Option(
        "--shared-scale", help="One colour scale and colour bar for all channel maps of a "
        "layer, instead of one scale per map.")] = False,
    as_json: Annotated[bool, typer.Option(
        "--json", help="Print the statistics as JSON instead of the table.")] = False,
    image: Annotated[Path | None, typer.Option(
        "--image", rich_help_panel=IMAGE_PANEL,
        help="A real image as the input (replaces SIZES), preprocessed with the torchvision "
             "weights' transforms or --resize, --mean and --std; drawn beside each layer's "
             "maps, and again under their mean.")] = None,
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
    """Feature maps and activation statistics of chosen layers, on noise, saved inputs or an image.

    Example: modelviz activations resnet18 --layer layer1 --image photo.jpg -o acts/
    """
    opts = ModelOptions.from_locals(locals())
    from modelviz.core.specs import parse_floats, parse_resize

    layers = layer or []
    types = module_type or []
    if image is None and (resize or mean or std):
        flag = "--resize" if resize else "--mean" if mean else "--std"
        raise SpecError(f"{flag} applies to --image only.", f"Add --image, or drop {flag}.")
    resize_value = parse_resize(resize)
    means = parse_floats(mean, "`mean`")
    stds = parse_floats(std, "`std`")
    if hist and no_images:
        raise SpecError("--hist draws into the layer images, and --no-images draws none.",
                        "Drop one of them.")
    if no_images and (shared_scale or channel_dim is not None):
        flag = "--shared-scale" if shared_scale else "--channel-dim"
        raise SpecError(f"{flag} shapes the layer images, and --no-images draws none.",
                        "Drop one of them.")


    from modelviz.core.session import prepare_image
    from modelviz.features.activations.measure import measure_activations
    from modelviz.features.activations.pictures import check_folder, write_images

    draw = not no_images and (output is not None or bool(layers) or bool(types))
    folder = output if output is not None else DEFAULT_FOLDER
    if draw:
        check_folder(folder)

    with spinner(f"Loading {opts.model}", quiet=as_json):
        picture = None
        if image is not None:
            from modelviz.cli._process import heavy_imports

            with heavy_imports():
                prepared, picture = prepare_image(
                    opts.model, image, *opts.specs, resize=resize_value, mean=means, std=stds,
                    **opts.prepare_options())
        else:
            prepared = opts.prepare()
    tell_loaded(prepared)
    if picture is not None:
        note(f"input: {picture.path} as {'x'.join(map(str, picture.shape))} ({picture.how})")
    with spinner("Running the forward pass", quiet=as_json):
        result = measure_activations(prepared, layers=layers, types=types, images=draw,
                                     max_channels=max_channels, hist=hist, train=opts.train,
                                     picture=picture, channel_dim=channel_dim)
    for message in result.notes:
        note(message)
    if draw:
        count = sum(1 for item in result.layers if item.capture is not None)
        with spinner(f"Drawing {count} image(s)", quiet=as_json):
            written = write_images(result, folder, hist=hist, shared_scale=shared_scale)
        if written:
            note(f"wrote {len(written)} image(s) to {folder}/")
    elif not layers and not types and not no_images:
        note("statistics of every module; choose layers with --layer or --type to draw them")
    if as_json:
        echo_json(result.to_dict())
    else:
        from modelviz.features.activations.view import render_report

        print_out(render_report(result))

