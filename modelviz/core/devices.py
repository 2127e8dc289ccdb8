"""Turning a device string into a ``torch.device`` that exists on this machine."""

from __future__ import annotations

import torch

from modelviz.core.specs import parse_device
from modelviz.errors import DeviceError


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
                f"--device {value} asked for CUDA, but torch {torch.__version__} sees no CUDA GPU "
                "here.",
                "Use --device cpu (or --device meta for shapes and counts without memory).",
            )
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            raise DeviceError(
                f"--device {value}: this machine has {count} CUDA device(s).",
                f"Use cuda:0 to cuda:{count - 1}.",
            )
    if device.type == "mps" and not _mps_available():
        raise DeviceError(
            "--device mps asked for Apple's Metal backend, which is not available here.",
            "Use --device cpu.",
        )
    return device
