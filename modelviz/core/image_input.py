"""A real image as the model's input: read with PIL, preprocessed the way the model expects.

For a torchvision name the weights' own transforms are used (``zoo.preprocessing``: resize, centre
crop, normalise). For other models the user says how: ``--resize`` (``224``: shorter side to 224,
then the centre 224x224; ``224x160``: exactly that height and width), ``--mean`` and ``--std``.
The channel count is what the model takes: a 1-channel model gets the image in greyscale.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelviz.core.specs import parse_floats, parse_resize
from modelviz.core.untrusted import not_a_file
from modelviz.errors import ModelFileError, SpecError, one_line
from modelviz.output import mark_input

__all__ = ["ImageInput", "input_channels", "open_image", "parse_floats", "parse_resize",
           "preprocess"]

_MODES = {1: "L", 3: "RGB", 4: "RGBA"}


@dataclass
class ImageInput:
    """The model's input made from an image, and the same pixels for showing beside the maps."""

    tensor: torch.Tensor  # channels x height x width, float32, normalised: what the model gets
    display: torch.Tensor  # height x width x channels in [0, 1], before normalisation
    path: Path
    how: str  # how it was preprocessed, for notes

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)


def input_channels(model: nn.Module) -> int | None:
    """The input channels of the model's first convolution (in definition order), if any."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            return int(module.in_channels)
    return None


def open_image(path: str | Path) -> Any:
    """The decoded image (a ``PIL.Image``), turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    file = Path(path)
    why = not_a_file(file)
    if why is not None:
        raise ModelFileError(f"`image={path}`: {why}.", "Check the path to the image.")
    mark_input(file, "`image`")
    try:
        with warnings.catch_warnings():
            # PIL only warns between its limit and twice it: both are refused here, before
            # decoding, since no model input needs 89 megapixels
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(file) as opened:
                opened.load()
                image = ImageOps.exif_transpose(opened)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        pixels = re.search(r"\((\d+) pixels\)", str(exc))
        count = f"{int(pixels.group(1)):,} pixels" if pixels else "too many pixels"
        raise ModelFileError(
            f"`image={path}` claims {count}, over PIL's limit of {Image.MAX_IMAGE_PIXELS:,}: "
            "a decompression bomb, or far larger than any model input.",
            "Give a smaller image (resize it first).") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ModelFileError(f"`image={path}` is not an image PIL can read: {one_line(exc)}.",
                             "Give a PNG, JPEG, BMP, GIF, TIFF or WebP file.") from exc
    return image


def _per_channel(values: tuple[float, ...], what: str, channels: int) -> list[float]:
    if len(values) == 1:
        return list(values) * channels
    if len(values) != channels:
        raise SpecError(
            f"{what} has {len(values)} values, but the model's input has {channels} "
            f"channel{'s' if channels != 1 else ''}.",
            "Give one value for all channels, or one per channel.")
    return list(values)


def _weights_transform(name: str) -> Any:
    from modelviz.core import zoo

    kind = zoo.family(name)
    if kind in ("video", "optical_flow"):
        raise SpecError(f"`image` cannot feed {name}, a {kind.replace('_', ' ')} model.",
                        "Give `sizes`, or save the clip or frame pair and use `input_file`.")
    return zoo.preprocessing(name)


def _torchvision(image: Any, transform: Any) -> tuple[torch.Tensor, torch.Tensor]:
    tensor = transform(image.convert("RGB")).float()
    mean = getattr(transform, "mean", None)
    std = getattr(transform, "std", None)
    display = tensor
    if mean is not None and std is not None:
        display = tensor * torch.tensor(std)[:, None, None] + torch.tensor(mean)[:, None, None]
    return tensor, display


def preprocess(image: Any, path: str | Path, *, channels: int,
               torchvision_name: str | None = None,
               resize: int | tuple[int, int] | None = None,
               mean: tuple[float, ...] | None = None,
               std: tuple[float, ...] | None = None) -> ImageInput:
    """Turn a ``PIL.Image`` into the model's input (channels x height x width, float32).

    A torchvision name with no ``resize``, ``mean`` or ``std`` uses the weights' transforms;
    otherwise pixels are scaled to [0, 1], resized as ``resize`` says (kept as they are without
    it) and normalised with ``mean`` and ``std`` (for a torchvision name, by default the
    weights' own).
    """
    from torchvision.transforms import functional as tf

    transform = _weights_transform(torchvision_name) if torchvision_name is not None else None
    if transform is not None and resize is None and mean is None and std is None:
        tensor, display = _torchvision(image, transform)
        how = f"the {torchvision_name} weights' transforms"
    else:
        if transform is not None:
            mean = mean or tuple(getattr(transform, "mean", ())) or None
            std = std or tuple(getattr(transform, "std", ())) or None
        mode = _MODES.get(channels)
        if mode is None:
            raise SpecError(
                f"`image` gives 1 (greyscale), 3 (RGB) or 4 (RGBA) channels, but the model's "
                f"input has {channels}.", "Use `sizes` or `input_file` for this model.")
        means = _per_channel(mean, "`mean`", channels) if mean is not None else None
        stds = _per_channel(std, "`std`", channels) if std is not None else None
        picture = image.convert(mode)
        how = {1: "greyscale", 3: "RGB", 4: "RGBA"}[channels]
        if isinstance(resize, int):
            picture = tf.center_crop(tf.resize(picture, resize), [resize, resize])
            how += f", shorter side to {resize} and the centre {resize}x{resize}"
        elif resize is not None:
            picture = tf.resize(picture, list(resize))
            how += f", resized to {resize[0]}x{resize[1]}"
        else:
            how += ", at the image's own size (`resize` changes it)"
        display = tf.pil_to_tensor(picture).float() / 255.0
        tensor = display
        if means is not None or stds is not None:
            tensor = tf.normalize(display, means or [0.0] * channels, stds or [1.0] * channels)
            how += ", normalised"
    return ImageInput(tensor.contiguous(), display.clamp(0, 1).permute(1, 2, 0).contiguous(),
                      Path(path), how)
