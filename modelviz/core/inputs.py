"""Building the model's inputs: from size specs, or from a saved file.

The one place tensors are made for the forward pass. Float inputs are seeded normal noise in the
model's dtype; integer inputs are token ids below the model's vocabulary (its largest embedding
table); an input named like a mask is all ones, as a tokenizer makes it for unpadded text.
Named sizes become keyword inputs, checked against ``forward``'s signature before anything is
allocated, so that a size bound to the wrong parameter fails here in words, not in torch.
"""

from __future__ import annotations

import difflib
import inspect
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelviz.core import machine as memory
from modelviz.core import untrusted
from modelviz.core.records import describe, iter_metas
from modelviz.core.specs import InputSpec, check_named
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
    """The vocabulary: the largest embedding table, the one token ids feed (position and type
    tables are smaller, and a model makes their indices itself). Ids drawn below the smallest
    table would be {0, 1} for BERT, whose token-type table has 2 rows."""
    sizes = [m.num_embeddings for m in model.modules()
             if isinstance(m, (nn.Embedding, nn.EmbeddingBag))]
    return max(sizes) if sizes else 2


#: ``forward`` parameters that take something other than an input tensor (a cache, a flag): a
#: positional size bound to one of them ends in a cryptic error deep inside the model.
NOT_INPUTS = frozenset({
    "past_key_values", "past_key_value", "past", "layer_past", "kv_cache", "use_cache",
    "return_dict", "output_attentions", "output_hidden_states", "return_loss", "training",
    "inference_params",
})
_MASK = re.compile(r"(^|_)masks?$")
_PADDING_MASK = re.compile(r"(^|_)padding_masks?$")


def _parameters(model: nn.Module) -> list[inspect.Parameter] | None:
    """``forward``'s parameters, or None where they cannot be read (a TorchScript method)."""
    try:
        return list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError, AttributeError):
        return None


def _takes_input(param: inspect.Parameter) -> bool:
    """Whether ``param`` may take an input tensor: not a known cache or flag, nor a parameter
    whose default is a flag or a string."""
    return (param.name not in NOT_INPUTS
            and not isinstance(param.default, (bool, str))
            and param.annotation not in (bool, str, "bool", "str"))


def _owner(model: nn.Module) -> str:
    return f"{type(model).__name__}.forward"


def _check_names(model: nn.Module, params: list[inspect.Parameter], names: list[str],
                 what: str) -> None:
    """Each keyword in ``names`` must be a parameter of ``forward`` (or go to its **kwargs)."""
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    known = [p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for name in names:
        if name in known:
            continue
        positional_only = any(p.name == name and p.kind is p.POSITIONAL_ONLY for p in params)
        if positional_only:
            raise SpecError(f"`{what}` names {name!r}, which {_owner(model)} takes only by "
                            "position.", "Give it as a positional size, in order.")
        close = difflib.get_close_matches(name, known, n=3, cutoff=0.6)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise SpecError(f"`{what}` names {name!r}, which {_owner(model)} does not take.{hint}",
                        f"Use one of its parameters: {', '.join(known) or 'none'}.")


def check_sizes(model: nn.Module, specs: list[InputSpec]) -> None:
    """Refuse, in one line, sizes that would bind to the wrong parameters of ``forward``: too
    many positional ones, one bound to a cache or a flag, or an unknown name."""
    params = _parameters(model)
    if params is None:
        return
    positional = [s for s in specs if s.name is None]
    named = [s.name for s in specs if s.name is not None]
    slots = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if not any(p.kind is p.VAR_POSITIONAL for p in params):
        bad = next((i for i, p in enumerate(slots[:len(positional)]) if not _takes_input(p)),
                   None)
        start = len(slots) if bad is None else bad
        free = [p.name for p in params[start:] if p.kind in (p.POSITIONAL_OR_KEYWORD,
                p.KEYWORD_ONLY) and _takes_input(p) and p.name not in named]
        example = ("attention_mask" if "attention_mask" in free
                   else next(iter(free), None))
        if bad is not None:
            name, spec = slots[bad].name, positional[bad]
            fix = (f"Name it instead, e.g. {example}={spec}" if example
                   else f"Drop it: {_owner(model)} takes no other input tensor")
            raise SpecError(
                f"size {str(spec)!r} would be passed as {name!r} of {_owner(model)}, which is "
                "not an input tensor.",
                f"{fix}; give {name} with `forward_args` if at all.")
        if len(positional) > len(slots):
            takes = ", ".join(p.name for p in slots) or "none"
            raise SpecError(
                f"{len(positional)} positional sizes given, but {_owner(model)} takes "
                f"{len(slots)} positional input{'s' if len(slots) != 1 else ''} ({takes}).",
                f"Drop the extra sizes, or name them, e.g. {example}={positional[len(slots)]}."
                if example else "Drop the extra sizes.")
    _check_names(model, params, named, "sizes")
    for spec, param in zip(positional, slots, strict=False):
        if param.name in named:
            raise SpecError(f"`sizes` gives {param.name!r} twice: by position ({spec}) and by "
                            "name.", "Give it once.")


def with_forward_args(inputs: ModelInputs, model: nn.Module,
                      forward_args: dict[str, Any] | None) -> ModelInputs:
    """``inputs`` with ``forward_args`` (``use_cache=False``) added as keyword arguments, each
    checked against ``forward``'s signature and against the inputs already there."""
    if not forward_args:
        return inputs
    for key in forward_args:
        if key in inputs.kwargs:
            raise SpecError(f"`forward_args` gives {key!r}, which the inputs give too.",
                            "Give it once.")
    params = _parameters(model)
    if params is not None:
        _check_names(model, params, list(forward_args), "forward_args")
        bound = input_names(model, len(inputs.args))
        for key in forward_args:
            if key in bound:
                raise SpecError(f"`forward_args` gives {key!r}, which a positional input fills "
                                "already.", "Give it once.")
    return ModelInputs(args=inputs.args, kwargs={**inputs.kwargs, **forward_args})


def _fill(name: str, shape: tuple[int, ...], dtype: torch.dtype, generator: torch.Generator,
          high: int) -> torch.Tensor:
    """A realistic value for the input called ``name``: masks that let every position through,
    zero token types, positions 0..N-1, token ids in the vocabulary, noise for the rest."""
    if _PADDING_MASK.search(name):  # torch's convention: True marks padding, and there is none
        return torch.zeros(shape, dtype=dtype)
    if _MASK.search(name):  # a tokenizer's convention: 1 marks a token to attend to
        return torch.ones(shape, dtype=dtype)
    if not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool):
        if name.endswith("token_type_ids"):
            return torch.zeros(shape, dtype=dtype)
        if name.endswith("position_ids") and shape:
            return torch.arange(shape[-1], dtype=torch.int64).expand(shape).to(dtype).clone()
    if dtype.is_floating_point or dtype.is_complex:
        return torch.randn(shape, generator=generator).to(dtype)
    if dtype == torch.bool:
        return torch.randint(0, 2, shape, generator=generator).bool()
    return torch.randint(0, high, shape, generator=generator, dtype=torch.int64).to(dtype)


def build_inputs(specs: list[InputSpec], *, model: nn.Module | None = None,
                 batch_size: int = 1, device: torch.device | str = "cpu",
                 float_dtype: torch.dtype = torch.float32, seed: int = 0) -> ModelInputs:
    """One tensor per spec, with the batch dimension prepended; named specs are keyword
    inputs."""
    if batch_size < 1:
        raise SpecError(f"bad `batch_size={batch_size}`.", "Use a whole number of 1 or more.")
    check_named(specs)
    if model is not None:
        check_sizes(model, specs)
    device = torch.device(device)
    generator = torch.Generator().manual_seed(seed)
    high = token_limit(model) if model is not None else 2
    count = sum(1 for spec in specs if spec.name is None)
    positional = input_names(model, count) if model is not None else [""] * count
    names = [spec.name or positional[i] for i, spec in enumerate(specs)]
    shapes = [((batch_size, *spec.dims),
               float_dtype if spec.dtype is None else getattr(torch, spec.dtype)) for spec in specs]
    if device.type != "meta":
        _check_fits(shapes, device)
    tensors: list[torch.Tensor] = []
    for name, (shape, dtype) in zip(names, shapes, strict=True):
        if device.type == "meta":
            tensors.append(torch.empty(shape, dtype=dtype, device=device))
            continue
        try:
            tensors.append(_fill(name, shape, dtype, generator, high).to(device))
        except (RuntimeError, MemoryError) as exc:  # torch's allocators raise RuntimeError
            raise _too_big(sum(_nbytes(*item) for item in shapes), device,
                           one_line(exc, limit=200)) from exc
    return ModelInputs(args=tuple(tensors[:count]),
                       kwargs={spec.name: tensor for spec, tensor in zip(specs, tensors,
                                                                          strict=True)
                               if spec.name is not None})


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


def needs_training_targets(model: nn.Module, args: tuple[Any, ...],
                           kwargs: dict[str, Any]) -> bool:
    """Whether ``training_targets`` makes targets for this call: a torchvision detection model
    whose ``forward`` takes them, given its images alone."""
    if "targets" in kwargs or len(args) != 1 or not type(model).__module__.startswith(
            "torchvision.models.detection"):
        return False
    params = _parameters(model)
    return params is not None and "targets" in [p.name for p in params]


def training_targets(model: nn.Module, args: tuple[Any, ...],
                     kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a torchvision detection model needs besides its images to run in training mode (it
    refuses to run without ``targets`` there): per image, one ground-truth box over the middle
    of the image, labelled 1, with a mask or 17 keypoints where the model predicts them. The
    losses' cost does not depend on the boxes' values: proposals and anchors are sampled to
    fixed counts per image. Empty for any other model, or when targets are given."""
    if not needs_training_targets(model, args, kwargs):
        return {}
    images = list(args[0])
    heads = getattr(model, "roi_heads", None)
    keypoints = getattr(getattr(heads, "keypoint_predictor", None), "kps_score_lowres", None)
    targets = []
    for image in images:
        height, width = image.shape[-2:]
        box = torch.tensor([[width / 4, height / 4, 3 * width / 4, 3 * height / 4]],
                           device=image.device)
        target = {"boxes": box, "labels": torch.ones(1, dtype=torch.int64, device=image.device)}
        if getattr(heads, "mask_predictor", None) is not None:
            mask = torch.zeros(1, height, width, dtype=torch.uint8, device=image.device)
            mask[:, height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1
            target["masks"] = mask
        if keypoints is not None:
            count = keypoints.out_channels
            points = torch.empty(1, count, 3, device=image.device)
            points[..., 0] = torch.linspace(width / 4, 3 * width / 4, count)
            points[..., 1] = torch.linspace(height / 4, 3 * height / 4, count)
            points[..., 2] = 1  # visible
            target["keypoints"] = points
        targets.append(target)
    return {"targets": targets}
