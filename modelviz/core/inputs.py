"""Building the model's inputs: from size specs, or from a saved file.

The one place tensors are made for the forward pass. Float inputs are seeded normal noise in the
model's dtype; integer inputs are token ids that fit every embedding table in the model.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelviz.core import machine as memory
from modelviz.core import untrusted
from modelviz.core.records import describe, iter_metas
from modelviz.core.specs import InputSpec
from modelviz.errors import ModelFileError, SpecError, one_line


@dataclass
class ModelInputs:
    """Positional and keyword arguments for ``model(*args, **kwargs)``."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def describe(self, model: nn.Module) -> list[dict[str, Any]]:
        """Name, shape and dtype of each input tensor, for reports; positional inputs are named
        after ``model.forward``'s parameters, as the graph and the ONNX file name them."""
        items: list[dict[str, Any]] = []
        for name, value in zip(input_names(model, len(self.args)), self.args, strict=True):
            for meta in iter_metas(describe(value)):
                items.append({"name": name, "shape": list(meta.shape), "dtype": meta.dtype})
        for key, value in self.kwargs.items():
            for meta in iter_metas(describe(value)):
                items.append({"name": key, "shape": list(meta.shape), "dtype": meta.dtype})
        return items


def token_limit(model: nn.Module) -> int:
    """The smallest embedding table in the model: integer inputs below it index any of them."""
    sizes = [m.num_embeddings for m in model.modules()
             if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    return min(sizes) if sizes else 2


def build_inputs(specs: list[InputSpec], *, model: nn.Module | None = None,
                 batch_size: int = 1, device: torch.device | str = "cpu",
                 float_dtype: torch.dtype = torch.float32, seed: int = 0) -> ModelInputs:
    """One tensor per spec, with the batch dimension prepended."""
    if batch_size < 1:
        raise SpecError(f"bad `batch_size={batch_size}`.", "Use a whole number of 1 or more.")
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    high = token_limit(model) if model is not None else 2
    shapes = [((batch_size, *spec.dims),
               float_dtype if spec.dtype is None else getattr(torch, spec.dtype)) for spec in specs]
    if device.type != "meta":
        _check_fits(shapes, device)
    tensors: list[torch.Tensor] = []
    for shape, dtype in shapes:
        if device.type == "meta":
            tensors.append(torch.empty(shape, dtype=dtype, device=device))
            continue
        try:
            if dtype.is_floating_point or dtype.is_complex:
                value = torch.randn(shape, generator=generator).to(dtype)
            elif dtype == torch.bool:
                value = torch.randint(0, 2, shape, generator=generator).bool()
            else:
                value = torch.randint(0, high, shape, generator=generator,
                                      dtype=torch.int64).to(dtype)
            tensors.append(value.to(device))
        except (RuntimeError, MemoryError) as exc:  # torch's allocators raise RuntimeError
            raise _too_big(sum(_nbytes(*item) for item in shapes), device,
                           one_line(exc, limit=200)) from exc
    return ModelInputs(args=tuple(tensors))


def _nbytes(shape: tuple[int, ...], dtype: torch.dtype) -> int:
    return math.prod(shape) * dtype.itemsize


def _free_bytes(device: torch.device) -> int | None:
    """Memory the inputs could take on ``device``: free CUDA memory, or what the OS says is
    available (a pass needs several times its input, so this only catches the impossible)."""
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    return memory.available()


def _too_big(needed: int, device: torch.device, why: str) -> SpecError:
    return SpecError(
        f"the inputs need {needed / 2**30:,.1f} GiB ({needed:,} bytes) on {device}, which "
        f"cannot be allocated ({why}).",
        "Give smaller `sizes` (without the batch dimension) or a smaller `batch_size`; "
        "`device=meta` gives shapes and counts without memory.")


def _check_fits(shapes: list[tuple[tuple[int, ...], torch.dtype]], device: torch.device) -> None:
    """Refuse inputs that cannot fit before allocating them: on Linux a large allocation may
    succeed and then get the process killed while it is filled."""
    needed = sum(_nbytes(shape, dtype) for shape, dtype in shapes)
    free = _free_bytes(device)
    if free is not None and needed > free:
        raise _too_big(needed, device, f"{free / 2**30:,.1f} GiB is free")


def _move(value: Any, device: torch.device, float_dtype: torch.dtype | None) -> Any:
    if isinstance(value, torch.Tensor):
        if float_dtype is not None and value.is_floating_point():
            value = value.to(float_dtype)
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_move(v, device, float_dtype) for v in value)
    if isinstance(value, dict):
        return {k: _move(v, device, float_dtype) for k, v in value.items()}
    return value


def load_inputs(path: str | Path, *, device: torch.device | str = "cpu",
                float_dtype: torch.dtype | None = None) -> ModelInputs:
    """A saved tensor, a tuple/list of tensors (positional), or a dict (keyword inputs)."""
    file = Path(path)
    why = untrusted.not_a_file(file)
    if why is not None:
        raise ModelFileError(f"`input_file={path}`: {why}.",
                             "Save inputs with torch.save(x, 'inputs.pt') first.")
    value = untrusted.load_data(file, "`input_file`")
    value = _move(value, torch.device(device), float_dtype)
    if isinstance(value, torch.Tensor):
        return ModelInputs(args=(value,))
    if isinstance(value, (tuple, list)):
        return ModelInputs(args=tuple(value))
    if isinstance(value, dict):
        return ModelInputs(args=(), kwargs={str(k): v for k, v in value.items()})
    raise ModelFileError(
        f"`input_file={path}` holds a {type(value).__name__}, not tensors.",
        "Save a tensor, a tuple of tensors or a dict of keyword inputs.",
    )


def input_names(model: nn.Module, count: int) -> list[str]:
    """Names of the first ``count`` positional parameters of ``forward``, for ONNX and reports."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    names = [p.name for p in params
             if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(names) >= count:
        return names[:count]
    return names + [f"input{i}" for i in range(len(names), count)]
