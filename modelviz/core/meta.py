"""The meta device: tensors with shapes and no values, and what to do when code needs values.

Building or running a model on ``torch.device("meta")`` costs no memory, but code that reads a
tensor's values (``.item()``, ``.tolist()``, ``if x.sum() > 0``, ``nonzero``) cannot work there.
This module recognises those failures, names the line of the model's code that caused them, and
offers a way to build such models anyway: small tensors made with real values on the cpu.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import _device_constructors
from torch.utils._pytree import tree_flatten, tree_map

from modelviz.errors import chain

#: Tensors with fewer values than this are made on the cpu by ``SmallOnCpu``: 16 KiB of float32,
#: enough for the schedules and tables that model code computes (widths, drop-path rates),
#: and small enough that even thousands of them cost little next to the model itself.
SMALL = 4096

#: Phrases of torch's errors for code that reads a meta tensor's values.
_READS_VALUES = (
    "cannot be called on meta tensors",  # .item(), bool(), int(), float()
    "cannot copy out of meta tensor",  # .tolist(), .cpu()
    "data-independent implementation does not exist",  # nonzero, boolean masks
    "convert meta device type tensor to numpy",
    "meta tensor without output_size",  # repeat_interleave
    "data-dependent",
)
#: torch's phrase for an operator with no meta kernel at all.
_NO_KERNEL = "with meta tensors, but there was no fake impl or meta kernel"
#: A tensor made on the cpu meeting the model's meta tensors.
_MIXED = "is not on the expected device meta"


def reads_values(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is torch refusing to read a meta tensor's values."""
    return any(phrase in str(e).lower() for e in chain(exc) for phrase in _READS_VALUES)


def missing_kernel(exc: BaseException) -> str | None:
    """The operator (``aten::_unique2``) that ``exc`` says has no meta kernel, if it says so."""
    for error in chain(exc):
        text = str(error)
        if _NO_KERNEL in text.lower():
            return text.split(": ", 1)[0].strip() or "an operator"
    return None


def meta_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from the meta device itself rather than from the model's inputs."""
    return (reads_values(exc) or missing_kernel(exc) is not None
            or any(_MIXED in str(e) for e in chain(exc)))


def _folder(module: Any) -> Path:
    return Path(module.__file__).resolve().parent


def _library_folders() -> tuple[Path, Path, Path]:
    import torchvision

    import modelviz

    return _folder(torch), _folder(modelviz), _folder(torchvision)


def culprit(exc: BaseException, *, code: bool = True) -> str | None:
    """``file.py, line N: code`` (without ``: code`` unless ``code``) for the innermost line of
    the model's own code in ``exc``'s traceback: past torch and modelviz, and past
    torchvision's helpers to its model code, so the user sees which line reads values."""
    torch_dir, modelviz_dir, vision_dir = _library_folders()
    frames = [(Path(f.filename).resolve(), f)
              for e in chain(exc) for f in traceback.extract_tb(e.__traceback__)]
    outside = [(path, f) for path, f in frames
               if not path.is_relative_to(torch_dir) and not path.is_relative_to(modelviz_dir)]
    own = [(path, f) for path, f in outside if not path.is_relative_to(vision_dir)]
    models = [(path, f) for path, f in outside if path.is_relative_to(vision_dir / "models")]
    chosen = own or models or outside
    if not chosen:
        return None
    path, frame = chosen[-1]
    name = (f"torchvision/{path.relative_to(vision_dir).as_posix()}"
            if path.is_relative_to(vision_dir) else path.name)
    text = " ".join((frame.line or "").split()) if code else ""
    return f"{name}, line {frame.lineno}" + (f": {text}" if text else "")


def _is_in_place(func: Callable[..., Any]) -> bool:
    name = getattr(func, "__name__", "")
    return name.endswith("_") and not name.endswith("__")


class SmallOnCpu(TorchFunctionMode):
    """Like ``torch.device("meta")``, but tensors made with fewer than ``SMALL`` values are real
    cpu tensors, so that building code can read them (regnet computes its widths with tensors
    and ``.tolist()``); an op mixing them with meta tensors sees meta copies of them."""

    def __torch_function__(self, func: Callable[..., Any], types: Any,
                           args: tuple[Any, ...] = (), kwargs: dict[str, Any] | None = None,
                           ) -> Any:
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        if func in _device_constructors() and kwargs.get("device") is None:
            shaped = func(*args, **{**kwargs, "device": "meta"})
            from_meta = any(isinstance(t, torch.Tensor) and t.is_meta for t in flat)
            if isinstance(shaped, torch.Tensor) and shaped.numel() < SMALL and not from_meta:
                return func(*args, **kwargs)
            return shaped
        tensors = [t for t in flat if isinstance(t, torch.Tensor)]
        if (any(t.is_meta for t in tensors)
                and any(not t.is_meta and t.dim() > 0 for t in tensors)):
            target = args[0] if args and _is_in_place(func) else None

            def to_meta(value: Any) -> Any:
                if (isinstance(value, torch.Tensor) and not value.is_meta
                        and value is not target):
                    return value.to("meta")
                return value

            args, kwargs = tree_map(to_meta, (args, kwargs))
        return func(*args, **kwargs)
