"""Turning a device string into a ``torch.device`` that exists on this machine, and refusing
work the meta device cannot do."""

from __future__ import annotations

import torch
from torch import nn

from modelviz.core.specs import parse_device
from modelviz.errors import DeviceError, ModelvizError


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def resolve_device(text: str | torch.device | None) -> torch.device:
    """``auto`` picks cuda, then mps, then cpu; an absent cuda or mps is a user error."""
    if isinstance(text, torch.device):
        return text
    value = parse_device(text or "auto")
    if value == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if _mps_available() else torch.device("cpu")
    device = torch.device(value)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(
                f"`device={value}` asked for CUDA, but torch {torch.__version__} sees no CUDA GPU "
                "here.",
                "Use `device=cpu` (or `device=meta` for shapes and counts without memory).",
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"`device={value}`: this machine has {count} CUDA device(s).",
                f"Use cuda:0 to cuda:{count - 1}.",
            )
    if device.type == "mps" and not _mps_available():
        raise DeviceError(
            "`device=mps` asked for Apple's Metal backend, which is not available here.",
            "Use `device=cpu`.",
        )
    return device


def require_values(where: torch.device | nn.Module, problem: str, fix: str, *,
                   error: type[ModelvizError] = DeviceError) -> None:
    """Refuse work that needs real numbers (weights, activations) on the meta device, which
    has only shapes: the one check every such feature makes. ``where`` is the device work runs
    on, or a model (meta if any parameter is); ``problem`` and ``fix`` are the caller's own
    wording, since each says what needs the numbers and what to do instead."""
    on_meta = (where.type == "meta" if isinstance(where, torch.device)
               else any(p.is_meta for p in where.parameters()))
    if on_meta:
        raise error(problem, fix)
