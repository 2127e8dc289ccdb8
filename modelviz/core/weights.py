"""Loading a state dict into a model, safely, with a clear account of what did not fit.

Files load with ``weights_only=True``: a checkpoint is data, and unpickling arbitrary objects
would run code from the file.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modelviz.core import untrusted
from modelviz.core.formatting import dims_text
from modelviz.errors import ModelFileError, UnsafePickleError, WeightsMismatchError
from modelviz.output import mark_input

#: Where training scripts put the model's weights inside a checkpoint dict.
CHECKPOINT_KEYS = ("model_state_dict", "state_dict", "model", "net", "module")
#: Prefixes added by DataParallel/DistributedDataParallel and torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class WeightsReport:
    """What happened to each key of the file."""

    path: str
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "key: file [a, b] vs model [c, d]"
    checked_only: bool = False  # meta device: keys and shapes checked, nothing copied
    source_key: str | None = None  # the checkpoint key the state dict came from
    stripped_prefix: str | None = None

    @property
    def clean(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self, limit: int = 3) -> str:
        parts = []
        for label, keys in (("missing from the file", self.missing),
                            ("unexpected in the file", self.unexpected),
                            ("with other shapes", self.mismatched)):
            if keys:
                shown = ", ".join(keys[:limit]) + (f", … ({len(keys)} in all)"
                                                   if len(keys) > limit else "")
                parts.append(f"{len(keys)} key(s) {label}: {shown}")
        return "; ".join(parts)


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], str | None]:
    """The tensors of a state dict file, and the checkpoint key they were found under."""
    file = Path(path)
    why = untrusted.not_a_file(file)
    if why is not None:
        raise ModelFileError(f"`weights={path}`: {why}.", "Check the path.")
    mark_input(file, "`weights`")
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            return dict(load_file(str(file), device="cpu")), None
        except Exception as exc:
            raise ModelFileError(f"`weights={path}` is not a valid safetensors file: {exc}",
                                 "Check that the file is complete.") from exc
    try:
        obj = untrusted.load_data(file, "`weights`")
    except UnsafePickleError as exc:
        raise ModelFileError(
            f"{exc.problem} modelviz loads weights with weights_only=True.",
            "If it is a whole pickled model, give it as `model` with `trust_pickle` instead.",
        ) from exc
    return _find_state_dict(obj, str(path))


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _find_state_dict(obj: Any, path: str) -> tuple[dict[str, torch.Tensor], str | None]:
    if _is_state_dict(obj):
        return dict(obj), None
    if isinstance(obj, dict):
        for key in CHECKPOINT_KEYS:
            if _is_state_dict(obj.get(key)):
                return dict(obj[key]), key
        keys = ", ".join(map(str, list(obj)[:6]))
        raise ModelFileError(
            f"`weights={path}` is a dict without a state dict in it (keys: {keys}).",
            f"Save model.state_dict(), or a checkpoint with one of: {', '.join(CHECKPOINT_KEYS)}.",
        )
    raise ModelFileError(f"`weights={path}` holds a {type(obj).__name__}, not a state dict.",
                         "Save model.state_dict() with torch.save.")


def _strip_wrapper_prefix(state: dict[str, torch.Tensor],
                          expected: set[str]) -> tuple[dict[str, torch.Tensor], str | None]:
    for prefix in WRAPPER_PREFIXES:
        if (all(k.startswith(prefix) for k in state)
                and not any(k.startswith(prefix) for k in expected)):
            return {k[len(prefix):]: v for k, v in state.items()}, prefix
    return state, None


def load_weights(model: nn.Module, path: str | Path, *, strict: bool = True) -> WeightsReport:
    """Copy the file's tensors into ``model``; on the meta device, only check keys and shapes."""
    state, source_key = read_state_dict(path)
    target = model.state_dict()
    state, prefix = _strip_wrapper_prefix(state, set(target))
    report = WeightsReport(path=str(path), source_key=source_key, stripped_prefix=prefix)
    report.missing = [k for k in target if k not in state]
    report.unexpected = [k for k in state if k not in target]
    report.mismatched = [
        f"{k}: file {dims_text(v.shape)} vs model {dims_text(target[k].shape)}"
        for k, v in state.items() if k in target and v.shape != target[k].shape
    ]
    if strict and not report.clean:
        raise WeightsMismatchError(
            f"`weights={path}` does not fit the model: {report.problems()}.",
            "Check that `model` and `kwargs` match the checkpoint, or pass `strict=False` to load "
            "the keys that fit.",
        )
    fitting = {k: v for k, v in state.items() if k in target and v.shape == target[k].shape}
    report.loaded = len(fitting)
    if any(t.is_meta for t in target.values()):
        report.checked_only = True
        return report
    model.load_state_dict(fitting, strict=False)
    return report
