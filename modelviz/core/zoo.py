"""torchvision's model registry: names, building without downloads, usual input sizes."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import inspect
import re
import sys
import types
from collections.abc import Iterator
from functools import cache
from typing import Any

from modelviz.core.specs import InputSpec
from modelviz.errors import UnknownModelError, UserCodeError

#: The one module of torch._dynamo that importing torchvision needs, for one function.
_DYNAMO_UTILS = "torch._dynamo.utils"


def _dynamo_utils_later() -> types.ModuleType:
    """A stand-in for torch._dynamo.utils whose attributes are the real ones, imported when
    first used: torchvision's roi_align imports ``is_compile_supported`` from it, and importing
    it imports all of torch._dynamo (0.8 s, a third of importing torchvision) for a function
    that only detection models' ``roi_align`` calls, and only in a fallback."""
    stand_in = types.ModuleType(_DYNAMO_UTILS)

    def real() -> Any:
        if sys.modules.get(_DYNAMO_UTILS) is stand_in:
            del sys.modules[_DYNAMO_UTILS]
        return importlib.import_module(_DYNAMO_UTILS)

    def is_compile_supported(device_type: Any) -> Any:
        return real().is_compile_supported(device_type)

    def attribute(name: str) -> Any:
        if name.startswith("__"):  # a module's own (inspect asks every module for __file__)
            raise AttributeError(name)
        return getattr(real(), name)

    stand_in.is_compile_supported = is_compile_supported  # type: ignore[attr-defined]
    stand_in.__getattr__ = attribute  # type: ignore[method-assign]
    return stand_in


@contextlib.contextmanager
def _without_dynamo() -> Iterator[None]:
    """torchvision imported with torch._dynamo left for later (``_dynamo_utils_later``)."""
    if "torchvision" in sys.modules or _DYNAMO_UTILS in sys.modules:
        yield
        return
    stand_in = _dynamo_utils_later()
    sys.modules[_DYNAMO_UTILS] = stand_in
    try:
        yield
    finally:
        if sys.modules.get(_DYNAMO_UTILS) is stand_in:
            del sys.modules[_DYNAMO_UTILS]


@cache
def _models() -> Any:
    """``torchvision.models``, imported the quick way."""
    with _without_dynamo():
        from torchvision import models
    return models


@cache
def model_names() -> tuple[str, ...]:
    return tuple(_models().list_models())


#: What a torchvision model name looks like: a spec that is not (``pkg.mod:attr``, a path) is
#: told apart without importing torchvision, which costs 0.4 s and imports torch._dynamo.
_NAME = re.compile(r"[a-z][a-z0-9_]*")


def is_model_name(name: str) -> bool:
    return _NAME.fullmatch(name) is not None and name in model_names()


def family(name: str) -> str:
    """classification, detection, segmentation, video, optical_flow or quantization."""
    models = _models()
    module = models.get_model_builder(name).__module__
    for kind in ("detection", "segmentation", "video", "optical_flow", "quantization"):
        if f".{kind}." in module:
            return kind
    return "classification"


def reads_values(name: str) -> bool:
    """Whether the model's forward pass reads its own values into its control flow: a detector
    keeps the boxes its scores pick (``nonzero``, ``topk`` then ``.item()``), so its outputs'
    shapes, and its later layers' work, come from the weights."""
    return family(name) == "detection"


def suggest(name: str) -> list[str]:
    lowered = name.lower()
    names = model_names()
    close = difflib.get_close_matches(lowered, names, n=4, cutoff=0.6)
    prefix = [n for n in names if n.startswith(lowered) and n not in close]
    return (close + prefix)[:4]


def _hub_names(spec: str) -> list[str]:
    """``hf:gpt2`` for ``gpt2``, ``timm:convnext_tiny`` for ``convnext_tiny``, where the extra
    is installed: people type the name they know from the hub."""
    import importlib
    import importlib.util

    found: list[str] = []
    name = spec.strip().lower()
    if not re.fullmatch(r"[a-z0-9_.-]+", name):
        return found
    if importlib.util.find_spec("transformers") is not None:
        with contextlib.suppress(Exception):  # a broken install must not hide the real message
            auto = importlib.import_module("transformers.models.auto.configuration_auto")
            if name in auto.CONFIG_MAPPING_NAMES:
                found.append(f"hf:{name}")
    if importlib.util.find_spec("timm") is not None:
        with contextlib.suppress(Exception):
            if importlib.import_module("timm").is_model(name):
                found.append(f"timm:{name}")
    return found


def unknown_model_error(spec: str) -> UnknownModelError:
    hints = _hub_names(spec) + suggest(spec)
    did_you_mean = f" Did you mean {', '.join(hints)}?" if hints else ""
    return UnknownModelError(
        f"unknown model {spec!r}: it is not a torchvision model, a file, or module:attr."
        f"{did_you_mean}",
        "Run `modelviz models` to list torchvision names, or give path/to/file.py:ClassName.",
    )


def build(name: str, kwargs: dict[str, Any]) -> Any:
    """Build a randomly initialised torchvision model; never downloads weights."""
    models = _models()
    builder = models.get_model_builder(name)
    params = inspect.signature(builder).parameters
    options: dict[str, Any] = {"weights": None}
    if "weights_backbone" in params:
        options["weights_backbone"] = None
    options.update(kwargs)
    if options.get("weights") is not None or options.get("weights_backbone") is not None:
        raise UserCodeError(
            "pretrained weights cannot be downloaded by modelviz.",
            "Save them with torch.save(model.state_dict(), 'w.pt') and pass `weights=w.pt`.",
        )
    try:
        return builder(**options)
    except (TypeError, ValueError) as exc:
        raise UserCodeError(
            f"torchvision could not build {name} with {kwargs}: {exc}",
            "Check the `kwargs` names against the torchvision documentation for this model.",
        ) from exc


def default_sizes(name: str) -> list[InputSpec]:
    """The input size a model of this family is usually run at (without the batch dimension)."""
    models = _models()
    kind = family(name)
    if kind == "detection":
        return [InputSpec((3, 800, 800))]
    if kind == "optical_flow":
        return [InputSpec((3, 128, 128)), InputSpec((3, 128, 128))]
    def crop_of(entry: Any) -> tuple[int, int]:
        keywords = getattr(entry.transforms, "keywords", {})
        crop = keywords.get("crop_size") or keywords.get("resize_size") or 224
        if isinstance(crop, (tuple, list)):
            return int(crop[0]), int(crop[-1])
        return int(crop), int(crop)

    entries = list(models.get_model_weights(name))
    # A ViT is built for one image size, 224 unless told otherwise, whatever its weights were
    # trained at (vit_h_14's first weights are at 518): the smallest crop is the one it takes.
    height, width = (min(map(crop_of, entries)) if name.startswith("vit_")
                     else crop_of(entries[0]))
    if kind == "video":
        return [InputSpec((3, 16, height, width))]
    return [InputSpec((3, height, width))]


def preprocessing(name: str) -> Any:
    """The transforms torchvision documents for this model's weights (resize, crop, normalise)."""
    models = _models()
    weights = models.get_model_weights(name)
    return next(iter(weights)).transforms()
