"""Finding the tensors inside a model's inputs and outputs: tuples, lists, dicts, nested.

``walk`` is the one walker the probes use while the model runs (the graph's data flow, the
activation statistics, the autograd roots): a plain recursion, cheap enough to run on every
operation; ``tensors`` is the same walk without the paths, cheaper still. ``flat`` follows
torch's pytree instead, which is how the ONNX exporters flatten inputs and outputs; the file's
names and the tensors compared against it must come in that order.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import torch

__all__ = ["flat", "key_text", "leading_batch", "path_text", "tensors", "walk"]


#: Types of the arguments most operations take besides tensors: never containers, so the
#: walkers skip the slower ``Mapping`` check (an abstract class) for them.
_LEAVES = frozenset({int, float, bool, str, type(None), torch.dtype, torch.device, slice,
                     type(Ellipsis)})


def walk(value: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...],
                                                                       torch.Tensor]]:
    """Every tensor inside ``value`` with its path: (), ("0",), ("1", "0"), ("logits",)."""
    if isinstance(value, torch.Tensor):
        yield path, value
    elif isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            yield from walk(item, (*path, str(i)))
    elif isinstance(value, dict) or (type(value) not in _LEAVES and isinstance(value, Mapping)):
        for key, item in value.items():
            yield from walk(item, (*path, str(key)))


def path_text(path: tuple[str, ...]) -> str:
    """("1", "0") -> "1.0"."""
    return ".".join(path)


def tensors(value: Any) -> list[torch.Tensor]:
    """The tensors of ``value`` in ``walk``'s order, without their paths: a plain recursion
    into one list, faster than ``walk``, since the graph's probe calls it on every operation."""
    found: list[torch.Tensor] = []
    _collect(value, found)
    return found


def _collect(value: Any, found: list[torch.Tensor]) -> None:
    if isinstance(value, torch.Tensor):
        found.append(value)
    elif isinstance(value, (tuple, list)):
        for item in value:
            _collect(item, found)
    elif isinstance(value, dict) or (type(value) not in _LEAVES and isinstance(value, Mapping)):
        for item in value.values():
            _collect(item, found)


def key_text(key: Any) -> str:
    """A pytree path key as text: a dict key, a sequence index or an attribute name."""
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)


def flat(value: Any) -> list[tuple[str, torch.Tensor]]:
    """(dotted path, tensor) of every tensor leaf, in torch pytree's order: the exporters'."""
    from torch.utils import _pytree as pytree

    leaves, _ = pytree.tree_flatten_with_path(value)
    return [(".".join(key_text(k) for k in path), leaf) for path, leaf in leaves
            if isinstance(leaf, torch.Tensor)]


def leading_batch(args: tuple[Any, ...], kwargs: dict[str, Any]) -> int | None:
    """The shared leading dimension of every input tensor: the batch, if there is one."""
    found = [t for _, t in flat((args, kwargs))]
    firsts = {t.shape[0] for t in found if t.dim() > 0}
    if len(firsts) != 1 or any(t.dim() == 0 for t in found):
        return None
    return firsts.pop()
