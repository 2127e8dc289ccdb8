"""Autocast on the meta device, which torch's autocast does not support: CUDA's policy for the
ops that decide memory, applied above autograd so that what it saves is what CUDA's would be.

Matrix products and convolutions run in 16 bits on 16-bit copies of their float32 inputs;
weights' copies are cached for the whole autocast region, as CUDA's autocast caches casts of
leaf tensors that need gradients; normalisations, softmax and losses run in float32.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_map

_LOW = {F.linear, F.conv1d, F.conv2d, F.conv3d, F.conv_transpose1d, F.conv_transpose2d,
        F.conv_transpose3d, F.prelu, F.bilinear, F.scaled_dot_product_attention,
        F.multi_head_attention_forward,  # its own linears and attention, which a mode misses
        torch.matmul, torch.mm, torch.bmm, torch.baddbmm, torch.addmm, torch.addbmm,
        torch.einsum, torch.Tensor.matmul, torch.Tensor.__matmul__, torch.Tensor.mm,
        torch.Tensor.bmm, torch.Tensor.addmm, torch.Tensor.baddbmm}
_FLOAT_NAMES = ("acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p",
                "reciprocal", "rsqrt", "sinh", "tan", "pow", "softmax", "log_softmax", "cumsum",
                "cumprod", "sum", "prod", "logsumexp", "norm", "dist", "cdist", "renorm",
                "__pow__", "__rpow__")
_FLOAT = {F.layer_norm, F.group_norm, F.softmax, F.log_softmax, F.cross_entropy, F.nll_loss,
          F.mse_loss, F.l1_loss, F.smooth_l1_loss, F.huber_loss, F.kl_div, F.softplus,
          F.binary_cross_entropy_with_logits, F.cosine_similarity}
for _name in _FLOAT_NAMES:  # CUDA's float32 list, as functions and as tensor methods
    for _owner in (torch, torch.Tensor):
        if hasattr(_owner, _name):
            _FLOAT.add(getattr(_owner, _name))
_RMS = getattr(F, "rms_norm", None)
if _RMS is not None:
    _FLOAT.add(_RMS)


class _Autocast(TorchFunctionMode):
    def __init__(self, dtype: torch.dtype) -> None:
        super().__init__()
        self.dtype = dtype
        self.cache: dict[int, torch.Tensor] = {}

    def _cast(self, value: Any, dtype: torch.dtype, source: tuple[torch.dtype, ...]) -> Any:
        if not isinstance(value, torch.Tensor) or value.dtype not in source:
            return value
        cacheable = value.is_leaf and value.requires_grad and dtype == self.dtype
        if cacheable and id(value) in self.cache:
            return self.cache[id(value)]
        cast = value.to(dtype)
        if cacheable:
            self.cache[id(value)] = cast
        return cast

    def __torch_function__(self, func: Any, types: Any, args: Any = (),
                           kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _LOW:
            args, kwargs = tree_map(
                lambda v: self._cast(v, self.dtype, (torch.float32,)), (args, kwargs))
        elif func in _FLOAT:
            args, kwargs = tree_map(
                lambda v: self._cast(v, torch.float32, (torch.float16, torch.bfloat16)),
                (args, kwargs))
        return func(*args, **kwargs)


@contextmanager
def emulated_autocast(dtype: torch.dtype) -> Iterator[None]:
    """CUDA's autocast to ``dtype``, for a pass on the meta device."""
    mode = _Autocast(dtype)
    with mode:
        yield
    mode.cache.clear()
