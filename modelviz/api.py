"""The Python API, mirroring the CLI: ``modelviz.summary(model, "3x224x224", device="cpu")``.

Each function takes the model as a spec string (anything ``modelviz`` accepts on the command line)
or an ``nn.Module``. A module you pass in is left as it was: same device, dtype and mode.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelviz import engine
from modelviz.devices import resolve_device
from modelviz.errors import SpecError
from modelviz.inputs import ModelInputs, build_inputs, load_inputs
from modelviz.layer_table import Summary
from modelviz.loading import LoadedModel, load_model
from modelviz.records import Trace
from modelviz.specs import MODEL_DTYPES, InputSpec, parse_dtype, parse_size

SizeLike = str | InputSpec | tuple[int, ...] | list[int]


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


def _as_spec(size: SizeLike) -> InputSpec:
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
            input_file: str | Path | None = None, seed: int = 0) -> Prepared:
    """Load the model (the one place models are built) and build its inputs."""
    specs = [_as_spec(s) for s in sizes]
    target = resolve_device(device)
    float_dtype = _torch_dtype(dtype)
    if isinstance(model, nn.Module):
        if float_dtype is not None and engine.model_dtype(model) not in (None, float_dtype):
            model = copy.deepcopy(model).to(float_dtype)  # cast a copy; yours stays as it is
        # The engine moves a module you pass to the device for the pass and back afterwards.
        loaded = load_model(model, weights=weights, strict=strict,
                            device=engine.model_device(model) or target)
    else:
        loaded = load_model(model, kwargs=kwargs, weights=weights, strict=strict,
                            trust_pickle=trust_pickle, device=target, dtype=float_dtype)
    input_dtype = float_dtype or engine.model_dtype(loaded.module) or torch.float32
    if input_file is not None:
        if specs:
            raise SpecError("give either SIZES or --input-file, not both.",
                            "Drop SIZES to use the saved inputs.")
        inputs = load_inputs(input_file, device=target, float_dtype=float_dtype)
    else:
        if not specs:
            if loaded.default_sizes is None:
                raise SpecError(
                    f"SIZES needed: modelviz cannot guess the input of {loaded.name}.",
                    "Give one size per input after MODEL, e.g. 3x224x224 or int64:128.",
                )
            specs = loaded.default_sizes
        inputs = build_inputs(specs, model=loaded.module, batch_size=batch_size, device=target,
                              float_dtype=input_dtype, seed=seed)
    return Prepared(loaded, inputs, target, batch_size)


def run(prepared: Prepared, *, train: bool = False, grad: bool = False,
        keep_output: bool = False, probes: tuple[engine.Probe, ...] = ()) -> Trace:
    """The instrumented forward pass of a prepared model."""
    return engine.run(prepared.model, prepared.inputs.args, prepared.inputs.kwargs,
                      device=prepared.device, train=train, grad=grad,
                      keep_output=keep_output, probes=probes)


def trace(model: str | nn.Module, *sizes: SizeLike, train: bool = False,
          probes: tuple[engine.Probe, ...] = (), **options: Any) -> Trace:
    """Load, build inputs and run once; ``options`` are those of ``prepare``."""
    return run(prepare(model, *sizes, **options), train=train, probes=probes)


def summarize(prepared: Prepared, trace: Trace) -> Summary:
    return Summary(model=prepared.loaded.name, trace=trace, inputs=prepared.inputs.describe(),
                   batch_size=prepared.batch_size)


def summary(model: str | nn.Module, *sizes: SizeLike, train: bool = False,
            **options: Any) -> Summary:
    """The layer table as an object: ``.totals``, ``.rows()``, ``.to_dict()``; render it with
    ``modelviz.render``. ``print(modelviz.summary(...))`` prints the table."""
    prepared = prepare(model, *sizes, **options)
    return summarize(prepared, run(prepared, train=train))
