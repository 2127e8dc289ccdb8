"""FLOPs: totals and per-module attribution equal torch's FlopCounterMode."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from modelviz import api
from modelviz.core import engine
from modelviz.features.summary.summary import rows
from sample_models.lstm_lm import LSTMLanguageModel
from sample_models.multi_io import TwoInputNet
from sample_models.seeds import Net, SmallConvNet
from sample_models.transformer import TinyTransformer


#: FlopCounterMode has no formula for the kernel ``scaled_dot_product_attention`` runs on the
#: CPU, so on its own it counts a transformer's attention as 0 there (and not on meta or cuda).
#: The two oracles disagree on vit_b_16: FlopCounterMode on cpu says 33.70 G, torchvision
#: publishes 17.564 GMACs = 35.13 G, which is what FlopCounterMode says on meta. torchvision is
#: right; the reference below is FlopCounterMode given torch's own attention formula for that
#: kernel, which is what modelviz does.
def _sdpa_shapes(query: Any, key: Any, value: Any, *args: Any, **kwargs: Any) -> int:
    """torch's own attention count, on the shapes FlopCounterMode hands a custom formula."""
    return int(sdpa_flop_count(query, key, value))  # type: ignore[no-untyped-call]  # torch


CPU_ATTENTION = ({torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _sdpa_shapes}
                 if hasattr(torch.ops.aten, "_scaled_dot_product_flash_attention_for_cpu")
                 else {})


def _reference(model: nn.Module, *args: torch.Tensor) -> FlopCounterMode:
    """FlopCounterMode on the same computation as ours: without nn.MultiheadAttention's fused
    fast path, whose single op FlopCounterMode cannot see into (the engine turns it off too),
    and with the CPU attention kernel counted (``CPU_ATTENTION``)."""
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)
        with torch.no_grad(), counter:
            model(*args)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    return counter


def _per_module(counter: FlopCounterMode, model: nn.Module) -> dict[str, int]:
    """FlopCounterMode names modules 'ClassName.child.grandchild'; ours are 'child.grandchild'."""
    root = type(model).__name__
    return {("" if key == root else key.removeprefix(root + ".")): sum(ops.values())
            for key, ops in counter.get_flop_counts().items() if key != "Global"}


TORCHVISION = [
    ("resnet18", 224), ("mobilenet_v3_small", 224), ("efficientnet_b0", 224),
    ("vit_b_16", 224), ("convnext_tiny", 224), ("swin_t", 224), ("densenet121", 224),
    ("squeezenet1_0", 224), ("inception_v3", 299),
]


@pytest.mark.parametrize(("name", "size"), TORCHVISION)
def test_torchvision_totals_and_attribution(name: str, size: int) -> None:
    torch.manual_seed(0)
    model = torchvision.models.get_model(name).eval()
    x = torch.randn(1, 3, size, size)
    trace = engine.run(model, (x,))
    reference = _reference(model, x)
    assert trace.flops == reference.get_total_flops() > 0
    expected = _per_module(reference, model)
    ours = {name: record.flops for name, record in trace.modules.items() if record.calls}
    assert {k: v for k, v in ours.items() if v} == {k: v for k, v in expected.items() if v}


@pytest.mark.parametrize(("name", "size"), [("resnet50", 224), ("vit_b_16", 224)])
def test_depth_one_rows_add_up(name: str, size: int) -> None:
    summary = api.summary(name, f"3x{size}x{size}")
    top = [row.record.flops for row in rows(summary.trace, depth=1)]
    assert sum(top) == summary.totals.flops
    assert summary.totals.macs == summary.totals.flops // 2


@pytest.mark.parametrize(("model", "inputs"), [
    (Net(), (torch.randn(2, 1, 28, 28),)),
    (SmallConvNet(), (torch.randn(1, 3, 224, 224),)),
    (TwoInputNet(), (torch.randn(1, 3, 32, 32), torch.randn(1, 10))),
    (TinyTransformer(), (torch.randint(0, 1000, (1, 64)),)),
    (nn.Conv1d(4, 8, 3), (torch.randn(4, 10),)),  # unbatched: watched op by op
    (nn.ConvTranspose2d(8, 4, 3, stride=2), (torch.randn(2, 8, 5, 5),)),
    (nn.Linear(6, 3), (torch.randn(2, 5, 6),)),
    (nn.MultiheadAttention(16, 4, batch_first=True), (torch.randn(1, 5, 16),) * 3),
])
def test_other_models_and_layers(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> None:
    model.eval()
    assert engine.run(model, inputs).flops == _reference(model, *inputs).get_total_flops() > 0


def test_llama_on_meta_matches_flop_counter() -> None:
    from sample_models.llama import llama_tiny

    with torch.device("meta"):
        model = llama_tiny()
    tokens = torch.empty(1, 32, dtype=torch.int64, device="meta")
    trace = engine.run(model, (tokens,))
    assert trace.flops == _reference(model, tokens).get_total_flops() > 0


def test_lstm_counts_its_matrix_products() -> None:
    """FlopCounterMode sees one fused op and counts 0; we count 2 * gates * h * (in + h)."""
    model = LSTMLanguageModel(vocab_size=1000, dim=64, layers=2)
    trace = engine.run(model, (torch.randint(0, 1000, (3, 35)),))
    per_step = 2 * 4 * 64 * (64 + 64)
    assert trace.modules["rnn"].flops == per_step * 35 * 3 * 2
    assert _reference(model.rnn, torch.randn(3, 35, 64)).get_total_flops() == 0


def test_gru_bidirectional_and_unbatched() -> None:
    gru = nn.GRU(10, 20, num_layers=2, bidirectional=True)
    trace = engine.run(gru, (torch.randn(7, 10),))
    first = 2 * 3 * 20 * (10 + 20)
    second = 2 * 3 * 20 * (40 + 20)
    assert trace.flops == (first + second) * 7 * 2


class _Attention(nn.Module):
    """Attention alone: q, k, v of (batch, heads, length, dim) through the fused kernel."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.scaled_dot_product_attention(q, k, v)


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_attention_flops_by_hand(device: str) -> None:
    """Q·Kᵀ is (L x D)·(D x S) per head and P·V is (L x S)·(S x V): 2·L·S·D + 2·L·S·V FLOPs per
    head and sample, whichever kernel runs (the CPU's flash kernel, or the math path on meta)."""
    batch, heads, length, source, dim, vdim = 2, 4, 16, 24, 8, 12
    trace = api.trace(_Attention(), (heads, length, dim), (heads, source, dim),
                      (heads, source, vdim), batch_size=batch, device=device)
    by_hand = batch * heads * (2 * length * source * dim + 2 * length * source * vdim)
    assert trace.flops == by_hand == 2 * 4 * (2 * 16 * 24 * 8 + 2 * 16 * 24 * 12)
    assert trace.uncounted == {}


def test_vit_counts_attention_on_cpu_as_published() -> None:
    """torchvision publishes vit_b_16 at 17.564 GMACs; the same model on cpu and meta agrees."""
    published = torchvision.models.get_model_weights("vit_b_16").DEFAULT.meta["_ops"]
    cpu = api.summary("vit_b_16", device="cpu").totals
    meta = api.summary("vit_b_16", device="meta").totals
    assert cpu.flops == meta.flops
    assert round(cpu.macs / 1e9, 3) == published == 17.564


class _FusedMHA(nn.Module):
    """Calls the fused multi-head attention kernel, which has no FLOP formula, directly."""

    def __init__(self) -> None:
        super().__init__()
        self.attn = nn.MultiheadAttention(16, 2, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.attn
        out: torch.Tensor = torch._native_multi_head_attention(
            x, x, x, 16, 2, a.in_proj_weight, a.in_proj_bias, a.out_proj.weight,
            a.out_proj.bias, need_weights=False)[0]
        return out


def test_an_op_without_formula_is_said_not_counted() -> None:
    """A kernel that multiplies matrices but has no formula is named, never a silent zero."""
    from modelviz.features.summary.markdown import render_markdown
    from modelviz.features.summary.options import TableOptions

    summary = api.summary(nn.Sequential(_FusedMHA()), (5, 16))
    assert summary.trace.uncounted == {"aten::_native_multi_head_attention": ["0"]}
    assert summary.to_dict()["not_counted"] == {"aten::_native_multi_head_attention": ["0"]}
    assert ("! not counted in FLOPs (no formula): aten::_native_multi_head_attention in 0"
            in str(summary).splitlines())
    assert ("**Not counted in FLOPs** (no formula): `aten::_native_multi_head_attention` in `0`."
            in render_markdown(summary, TableOptions()))
    ordinary = api.summary(nn.Sequential(nn.Linear(4, 4), nn.Upsample(scale_factor=2,
                                                                      mode="linear")), (2, 4))
    assert ordinary.trace.uncounted == {} and "not_counted" in ordinary.to_dict()


@pytest.mark.parametrize("name", ["swin_t", "regnet_y_400mf", "vit_b_32", "efficientnet_b0",
                                  "maxvit_t"])
def test_cpu_totals_match_torchvision_published(name: str) -> None:
    """torchvision's GFLOPS column (``meta["_ops"]``) is multiply-adds at the weights' crop
    size: an oracle from outside for every family, attention included, on the CPU."""
    weights = torchvision.models.get_model_weights(name).DEFAULT
    size = weights.transforms().crop_size[0]
    totals = api.summary(name, f"3x{size}x{size}", device="cpu").totals
    assert round(totals.macs / 1e9, 3) == weights.meta["_ops"]


# nn.MultiheadAttention is a leaf with a formula (flops._attention_flops): every variant of its
# arguments must count what FlopCounterMode counts op by op.
def _mha_reference(model: nn.Module, args: tuple[torch.Tensor, ...],
                   kwargs: dict[str, Any]) -> int:
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        counter = FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION)
        with torch.no_grad(), counter:
            model(*args, **kwargs)
    finally:
        torch.backends.mha.set_fastpath_enabled(True)
    return int(counter.get_total_flops())


_Q, _K, _V = torch.randn(2, 5, 16), torch.randn(2, 7, 16), torch.randn(2, 7, 16)
MHA_CASES = [
    ("self", {"batch_first": True}, (_Q, _Q, _Q), {}),
    ("self-need-weights", {"batch_first": True}, (_Q, _Q, _Q), {"need_weights": True}),
    ("key-is-value", {"batch_first": True}, (_Q, _K, _K), {"need_weights": False}),
    ("distinct", {"batch_first": True}, (_Q, _K, _V), {"need_weights": False}),
    ("sequence-first", {}, (_Q.transpose(0, 1),) * 3, {"need_weights": False}),
    ("kdim-vdim", {"batch_first": True, "kdim": 12, "vdim": 20},
     (_Q, torch.randn(2, 7, 12), torch.randn(2, 7, 20)), {"need_weights": False}),
    ("bias-kv-zero-attn", {"batch_first": True, "add_bias_kv": True, "add_zero_attn": True},
     (_Q, _K, _V), {}),
    ("mask", {"batch_first": True}, (_Q, _Q, _Q),
     {"attn_mask": torch.zeros(5, 5), "need_weights": True}),
    ("mask-fused", {"batch_first": True}, (_Q, _Q, _Q),
     {"attn_mask": torch.ones(5, 5, dtype=torch.bool).tril(), "need_weights": False}),
    ("unbatched", {}, (_Q[0], _K[0], _V[0]), {"need_weights": False}),
    ("no-bias", {"batch_first": True, "bias": False}, (_Q, _Q, _Q), {}),
]


@pytest.mark.parametrize(("options", "args", "kwargs"), [c[1:] for c in MHA_CASES],
                         ids=[c[0] for c in MHA_CASES])
def test_multihead_attention_formula_counts_what_its_ops_count(
        options: dict[str, Any], args: tuple[torch.Tensor, ...], kwargs: dict[str, Any]) -> None:
    from modelviz.core.flops import shape_formula

    model = nn.MultiheadAttention(16, 4, **options).eval()
    assert shape_formula(model, args) is not None  # counted from shapes, not op by op
    trace = engine.run(model, args, kwargs)
    assert trace.flops == _mha_reference(model, args, kwargs) > 0
    assert trace.root.flops == trace.flops


class _DirectAttention(nn.Module):
    """F.scaled_dot_product_attention called directly, as transformers and timm do."""

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        gqa = q.dim() == 4 and q.shape[1] != k.shape[1]
        return nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=gqa)


@pytest.mark.parametrize("shapes", [
    ((2, 4, 9, 8), (2, 4, 11, 8), (2, 4, 11, 6)),  # (batch, heads, length, head size)
    ((2, 4, 9, 8), (2, 2, 11, 8), (2, 2, 11, 8)),  # grouped-query: fewer key/value heads
    ((3, 9, 8), (3, 11, 8), (3, 11, 8)),  # no head dimension
])
def test_attention_kernel_counts_as_torch_counts_it_on_meta(
        shapes: tuple[tuple[int, ...], ...]) -> None:
    """On meta, FlopCounterMode sees the kernel it has a formula for; on the CPU, modelviz
    counts the CPU's kernel with the same formula, from shapes."""
    cpu = tuple(torch.randn(*shape) for shape in shapes)
    meta = tuple(t.to("meta") for t in cpu)
    counter = FlopCounterMode(display=False)
    with counter:
        _DirectAttention()(*meta)
    assert engine.run(_DirectAttention(), cpu).flops == counter.get_total_flops() > 0
    assert engine.run(_DirectAttention(), meta).flops == counter.get_total_flops()
