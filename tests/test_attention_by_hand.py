"""Attention's FLOPs against figures worked by hand, on the cpu and on meta.

tests/test_flops.py does ``scaled_dot_product_attention`` alone; here are the modules around it.
nn.MultiheadAttention takes three paths that must all give the same figure: with
``need_weights=True`` it multiplies matrices itself (``bmm``) to return the weights, without
them it calls ``scaled_dot_product_attention`` (on the cpu a fused kernel that FlopCounterMode
alone counts as 0), and in eval mode it would take a fused fast path with no formula at all,
which modelviz turns off. Every figure counts matrix products only, 2 FLOPs a multiply-add.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from modelviz import api

BATCH, LENGTH, SOURCE, EMBED, HEADS, FEEDFORWARD = 2, 10, 14, 32, 4, 64


class _CrossAttention(nn.Module):
    def __init__(self, need_weights: bool) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(EMBED, HEADS, batch_first=True)
        self.need_weights = need_weights

    def forward(self, x: torch.Tensor, memory: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.attn(x, memory, memory, need_weights=self.need_weights)[0]
        return out


@pytest.mark.parametrize("need_weights", [True, False])
@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_multihead_cross_attention_by_hand(device: str, need_weights: bool) -> None:
    """Queries from L = 10 positions, keys and values from S = 14, E = 32 in 4 heads:
    projections 2·B·L·E² (q) + 2·2·B·S·E² (k, v) + 2·B·L·E² (out); attention Q·Kᵀ and P·V,
    2·B·L·S·E each summed over the heads (each head has E/4 of the width)."""
    trace = api.trace(_CrossAttention(need_weights), (LENGTH, EMBED), (SOURCE, EMBED),
                      batch_size=BATCH, device=device)
    b, n, s, e = BATCH, LENGTH, SOURCE, EMBED
    projections = 2 * b * n * e * e + 2 * 2 * b * s * e * e + 2 * b * n * e * e
    attention = 2 * (2 * b * n * s * e)
    assert trace.flops == projections + attention == 232_448
    assert trace.modules["attn"].flops == trace.flops
    assert trace.uncounted == {}


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_transformer_encoder_layer_by_hand(device: str) -> None:
    """Self-attention (4 projections of E², Q·Kᵀ and P·V of L·L·E) and the feed-forward
    network (E -> F -> E): 2·B·L·4·E² + 2·2·B·L²·E + 2·B·L·2·E·F. In eval mode the layer
    would run torch's fused encoder kernel, whose FLOPs no formula counts."""
    layer = nn.TransformerEncoderLayer(EMBED, HEADS, FEEDFORWARD, dropout=0.0, batch_first=True)
    trace = api.trace(layer, (LENGTH, EMBED), batch_size=BATCH, device=device)
    b, n, e, f = BATCH, LENGTH, EMBED, FEEDFORWARD
    by_hand = 2 * b * n * 4 * e * e + 2 * 2 * b * n * n * e + 2 * b * n * 2 * e * f
    assert trace.flops == by_hand == 353_280
    assert trace.modules["self_attn"].flops == 2 * b * n * 4 * e * e + 2 * 2 * b * n * n * e
    assert trace.uncounted == {}
