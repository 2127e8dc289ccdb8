"""A model ready to run: the one place the model is loaded and its inputs are built.

Every command and every API function starts here: ``prepare`` turns MODEL, SIZES and the model
options into a ``Prepared`` (module, inputs, device), and ``run`` is the engine's instrumented
pass over it. Feature packages take a ``Prepared``; none of them loads a model itself.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import torch
from torch import nn

from modelviz.core import engine, placeholders
from modelviz.core.devices import require_values, resolve_device
from modelviz.core.inputs import (
    ModelInputs,
    build_inputs,
    load_inputs,
    training_targets,
    with_forward_args,
)
from modelviz.core.loading import LoadedModel, load_model
from modelviz.core.records import Trace
from modelviz.core.specs import (
    MODEL_DTYPES,
    InputSpec,
    check_named,
    check_seed,
    parse_dtype,
    parse_size,
)
from modelviz.errors import DeviceError, ModelvizError, SpecError

if TYPE_CHECKING:
    from modelviz.core.image_input import ImageInput

SizeLike = str | InputSpec | tuple[int, ...] | list[int]
_Result = TypeVar("_Result")


@dataclass
class Prepared:
    """A model ready to run, with its inputs, on its device."""

    loaded: LoadedModel
    inputs: ModelInputs
    device: torch.device
    batch_size: int = 1

    @property
    def model(self) -> nn.Module:
        return self.loaded.module

    @property
    def has_values(self) -> bool:
        """False on the meta device: shapes and counts only, no weights or activations."""
        return self.device.type != "meta"

    @property
    def placeholders(self) -> bool:
        """Whether the weights are placeholders (``prepare(values=False)``): zeros where the
        random init would have drawn, for work that needs shapes and counts only."""
        return self.loaded.placeholders

    def with_values(self) -> None:
        """Build the model again with its random init, as ``prepare`` does by default."""
        if self.loaded.rebuild is not None:
            self.loaded = self.loaded.rebuild()

    def require_values(self, problem: str, fix: str, *,
                       error: type[ModelvizError] = DeviceError) -> None:
        """Refuse, with the caller's ``problem`` and ``fix``, work that needs real numbers when
        the model runs on the meta device (``devices.require_values``: the one check)."""
        require_values(self.device, problem, fix, error=error)


def as_spec(size: SizeLike) -> InputSpec:
    if isinstance(size, InputSpec):
        return size
    if isinstance(size, str):
        return parse_size(size)
    if all(isinstance(d, int) and d > 0 for d in size):
        return InputSpec(tuple(size))
    raise SpecError(f"bad size {size!r}.", "Give sizes like '3x224x224' or (3, 224, 224).")


def _torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    dtype_value: torch.dtype = getattr(torch, parse_dtype(dtype, allowed=MODEL_DTYPES))
    return dtype_value


def prepare(model: str | nn.Module, *sizes: SizeLike, device: str | torch.device = "cpu",
            dtype: str | torch.dtype | None = None, batch_size: int = 1,
            kwargs: dict[str, Any] | None = None, weights: str | Path | None = None,
            strict: bool = True, trust_pickle: bool = False,
            input_file: str | Path | None = None, seed: int = 0,
            forward_args: dict[str, Any] | None = None, values: bool = True) -> Prepared:
    """Load the model (the one place models are built) and build its inputs.

    A size ``name=spec`` is a keyword input of ``forward``; ``forward_args`` are its other,
    non-tensor keyword arguments (``use_cache=False``), passed as they are.

    ``values=False`` is for work that needs shapes and counts alone (a summary, a graph, a
    memory plan): the weights may then be placeholders instead of random values (see
    ``core.placeholders``), which saves the random init; run such work through
    ``shapes_only``, which builds the model again with them if its pass reads values.
    """
    specs = check_named([as_spec(s) for s in sizes])
    check_seed(seed)
    target = resolve_device(device)
    float_dtype = _torch_dtype(dtype)
    if isinstance(model, nn.Module):
        if weights is not None or (float_dtype is not None
                                   and engine.model_dtype(model) not in (None, float_dtype)):
            # Weights go into a copy, and a cast happens to a copy: yours stays as it is.
            model = copy.deepcopy(model)
            if float_dtype is not None:
                model = model.to(float_dtype)
        # The engine moves a module you pass to the device for the pass and back afterwards.
        loaded = load_model(model, weights=weights, strict=strict,
                            device=engine.model_device(model) or target)
    else:
        # Random weights come from ``seed`` too, so that two runs print the same numbers; the
        # caller's own random state is left as it was.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            loaded = load_model(model, kwargs=kwargs, weights=weights, strict=strict,
                                trust_pickle=trust_pickle, device=target, dtype=float_dtype,
                                init=values)
    input_dtype = float_dtype or engine.model_dtype(loaded.module) or torch.float32
    if input_file is not None:
        if specs:
            raise SpecError("give either `sizes` or `input_file`, not both.",
                            "Drop `sizes` to use the saved inputs.")
        inputs = load_inputs(input_file, device=target, float_dtype=float_dtype)
    else:
        if not specs:
            if loaded.default_sizes is None:
                raise SpecError(
                    f"`sizes` needed: modelviz cannot guess the input of {loaded.name}.",
                    "Give one size per input after `model`, e.g. 3x224x224 or int64:128.",
                )
            specs = loaded.default_sizes
        inputs = build_inputs(specs, model=loaded.module, batch_size=batch_size, device=target,
                              float_dtype=input_dtype, seed=seed)
    inputs = with_forward_args(inputs, loaded.module, forward_args)
    return Prepared(loaded, inputs, target, batch_size)


def shapes_only(prepared: Prepared, work: Callable[[Prepared], _Result]) -> _Result:
    """``work(prepared)``, where the work needs shapes and counts only. If the model holds
    placeholders and its pass reads values that come from them (a detector keeping the boxes
    its scores pick), the pass stops; the model is built again with its random init, and the
    work is done again from the start, with new probes: the same result as if the model had
    had its random weights all along."""
    try:
        return work(prepared)
    except placeholders.ValuesNeeded:
        prepared.with_values()
        return work(prepared)


def run(prepared: Prepared, *, train: bool = False, grad: bool = False,
        keep_output: bool = False, probes: tuple[engine.Probe, ...] = ()) -> Trace:
    """The instrumented forward pass of a prepared model. In training mode a torchvision
    detection model is given made-up targets, which it refuses to run without
    (``inputs.training_targets``): the pass is then the one training runs, losses included."""
    args, kwargs = prepared.inputs.args, prepared.inputs.kwargs
    if train:
        kwargs = {**kwargs, **training_targets(prepared.model, args, kwargs)}
    return engine.run(prepared.model, args, kwargs, device=prepared.device, train=train,
                      grad=grad, keep_output=keep_output, probes=probes)


def prepare_image(model: str | nn.Module, image: str | Path, *sizes: SizeLike,
                  resize: str | int | tuple[int, int] | None = None,
                  mean: str | tuple[float, ...] | list[float] | None = None,
                  std: str | tuple[float, ...] | list[float] | None = None,
                  batch_size: int = 1, **options: Any) -> tuple[Prepared, ImageInput]:
    """Load the model and make its input from an image file (copied ``batch_size`` times).

    SIZES, if given, is one CxHxW size: C picks greyscale or colour, and HxW is the default
    ``resize``. Without it the channels are those of the model's first convolution (else 3).
    ``options`` are those of ``prepare``, except ``input_file``.
    """
    from modelviz.core.image_input import (
        input_channels,
        open_image,
        parse_floats,
        parse_resize,
        preprocess,
    )

    if options.get("input_file") is not None:
        raise SpecError("give either `image` or `input_file`, not both.",
                        "Drop one of them.")
    if batch_size < 1:
        raise SpecError(f"bad `batch_size={batch_size}`.", "Use a whole number of 1 or more.")
    specs = [as_spec(s) for s in sizes]
    if len(specs) > 1 or (specs and (len(specs[0].dims) != 3 or not specs[0].is_float
                                     or specs[0].name is not None)):
        given = " ".join(str(s) for s in specs)
        raise SpecError(f"`image` makes one image input, but `sizes` {given!r} is not one CxHxW "
                        "size.", "Drop `sizes`, or give one such as 3x224x224.")
    size = parse_resize(resize) if isinstance(resize, str) else resize
    means = parse_floats(mean, "`mean`") if isinstance(mean, str) else mean
    stds = parse_floats(std, "`std`") if isinstance(std, str) else std
    if stds is not None and any(v <= 0 for v in stds):
        raise SpecError(f"bad std {stds!r}: every value must be above 0.", "Give positive numbers.")
    picture = open_image(image)  # a missing or unreadable file fails before the model loads
    # prepare loads the model the one way models are loaded; its small noise input is replaced.
    base = prepare(model, *(specs or [InputSpec((1,))]), batch_size=1, **options)
    channels = specs[0].dims[0] if specs else (input_channels(base.model) or 3)
    if size is None and specs:
        size = (specs[0].dims[1], specs[0].dims[2])
    made = preprocess(picture, image, channels=channels,
                      torchvision_name=base.loaded.torchvision_name, resize=size,
                      mean=tuple(means) if means is not None else None,
                      std=tuple(stds) if stds is not None else None)
    placeholder = base.inputs.args[0]
    batch = made.tensor.to(placeholder.dtype).unsqueeze(0).expand(batch_size, *made.shape)
    inputs = ModelInputs(args=(batch.contiguous().to(base.device),), kwargs=base.inputs.kwargs)
    return Prepared(base.loaded, inputs, base.device, batch_size), made
