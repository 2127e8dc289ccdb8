"""Kernels whose memory the tensors they return do not tell.

On the meta device, attention as CUDA runs it, so that what it keeps for backward is the same:
torch's meta device takes ``scaled_dot_product_attention``'s math path, which builds and saves
the whole attention matrix; CUDA runs a fused kernel (flash for 16-bit inputs without a mask,
memory-efficient otherwise) that keeps only the output and the log-sum-exp. ViT-B/16 at batch 16
would otherwise be planned 14% above what an H100 measures.

On the CPU, oneDNN's RNN layers (what ``nn.LSTM`` runs there) take scratch memory through torch's
allocator inside one op, where no tensor shows it: a 2-layer LSTM step was planned 14% under the
allocator's peak without it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F

_RNN_FORWARD = torch.ops.aten.mkldnn_rnn_layer.default
_RNN_BACKWARD = torch.ops.aten.mkldnn_rnn_layer_backward.default


def _fused(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
           attn_mask: torch.Tensor | None = None, dropout_p: float = 0.0,
           is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False) -> Any:
    if enable_gqa and key.shape[-3] != query.shape[-3]:
        repeat = query.shape[-3] // key.shape[-3]
        key = key.repeat_interleave(repeat, dim=-3)
        value = value.repeat_interleave(repeat, dim=-3)
    half = query.dtype in (torch.float16, torch.bfloat16)
    if half and attn_mask is None and query.shape[-1] == value.shape[-1]:
        out = torch.ops.aten._scaled_dot_product_flash_attention(
            query, key, value, dropout_p, is_causal, False, scale=scale)
        return out[0]
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros(attn_mask.shape, dtype=query.dtype, device=query.device)
    if attn_mask is not None:
        attn_mask = attn_mask.expand(*query.shape[:-1], key.shape[-2])
    out = torch.ops.aten._scaled_dot_product_efficient_attention(
        query, key, value, attn_mask, query.requires_grad, dropout_p, is_causal, scale=scale)
    return out[0]


def _attention(original: Any) -> Any:
    def attention(*args: Any, **kwargs: Any) -> Any:
        query = args[0] if args else kwargs.get("query")
        if isinstance(query, torch.Tensor) and query.is_meta:
            try:
                return _fused(*args, **kwargs)
            except (RuntimeError, TypeError, NotImplementedError):
                pass  # a shape or an argument the fused kernels refuse: CUDA's math path too
        return original(*args, **kwargs)

    return attention


@contextmanager
def cuda_attention() -> Iterator[None]:
    """Inside: ``scaled_dot_product_attention`` on meta tensors takes CUDA's fused kernels.

    The function is swapped in ``torch.nn.functional`` rather than caught by a mode, because
    ``multi_head_attention_forward`` calls it from inside its own torch-function handler, where
    modes are off; code that imported the name before the pass keeps torch's.
    """
    original = F.scaled_dot_product_attention
    F.scaled_dot_product_attention = _attention(original)
    try:
        yield
    finally:
        F.scaled_dot_product_attention = original



def cpu_scratch(func: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> int:
    """Bytes a CPU kernel allocates and frees inside itself (a ``Tracker``'s ``scratch``).

    oneDNN's RNN layer reorders its two weight matrices into its own layout and keeps every time
    step's gates (gates x hidden for each of time x batch rows) in a scratchpad; its backward also
    builds the recurrent weights' gradient in that layout. Read from torch.profiler's allocation
    events inside ``mkldnn_rnn_layer`` and ``mkldnn_rnn_layer_backward`` (torch 2.14): this comes
    within 3% of them for LSTMs from 64 to 512 wide, 50 to 100 steps, batch 16 to 32.
    """
    if func is not _RNN_FORWARD and func is not _RNN_BACKWARD:
        return 0
    data, w_ih, w_hh = args[0], args[1], args[2]
    tensors = (data, w_ih, w_hh)
    if not all(isinstance(t, torch.Tensor) for t in tensors) or data.device.type != "cpu":
        return 0
    rows = data.numel() // max(data.shape[-1], 1)  # time x batch
    gates = rows * w_ih.shape[0] * data.element_size()
    weights = w_ih.nbytes + w_hh.nbytes
    if func is _RNN_BACKWARD:  # the recurrent weights' gradient, in oneDNN's layout
        weights += w_hh.nbytes
    return int(gates + weights)
