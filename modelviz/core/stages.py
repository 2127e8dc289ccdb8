"""Stages of long work, for whoever shows progress: ``stage("Exporting to ONNX")`` wraps a step.

The library names its steps and never draws anything itself; the CLI passes a spinner, and a
library caller passes nothing and gets ``quiet``. Free of torch: the CLI may import it at once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager

__all__ = ["Stage", "quiet"]

#: Called with a step's description; the context it returns lasts as long as the step.
Stage = Callable[[str], AbstractContextManager[None]]


@contextlib.contextmanager
def quiet(_: str) -> Iterator[None]:
    """The stage that shows nothing: the default of every function that takes ``stage``."""
    yield
