"""modelviz: look inside PyTorch models.

The package root imports nothing heavy: ``import modelviz`` and ``modelviz --help`` stay fast.
The API functions load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "activations", "export_onnx", "graph", "memory", "prepare", "profile",
           "summary", "tensorboard", "trace", "visdom", "wandb", "write_report"]
_API = frozenset(__all__) - {"__version__"}

if TYPE_CHECKING:
    from modelviz.api import (
        activations,
        export_onnx,
        graph,
        memory,
        prepare,
        profile,
        summary,
        tensorboard,
        trace,
        visdom,
        wandb,
        write_report,
    )


def __getattr__(name: str) -> Any:
    if name in _API:
        from modelviz import api

        return getattr(api, name)
    raise AttributeError(f"module 'modelviz' has no attribute {name!r}")
